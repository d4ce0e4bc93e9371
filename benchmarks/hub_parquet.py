"""An image folder written as the Hub stores a dataset, to time ``hf:`` against ``folder:`` on
the same images (docs/data.md):

    python benchmarks/hub_parquet.py FOLDER OUT [--shards N]
    cnnlab data bench folder:FOLDER  |  cnnlab data bench hf:OUT

FOLDER holds ``train/`` and ``test/`` of class folders (or class folders alone: all training).
OUT gets ``plain_text/SPLIT-0000K-of-0000N.parquet`` as ``uoft-cs/cifar10`` has them: an Image
column of each file's bytes as stored, a ClassLabel of the class folders' names, sorted, and
the features in the schema's ``huggingface`` metadata. Needs pyarrow (``cnnlab[hf]``).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from cnnlab.data.images import is_image_file

IMAGE = pa.struct([("bytes", pa.binary()), ("path", pa.string())])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("out", type=Path, help="new folder for plain_text/*.parquet")
    parser.add_argument("--shards", type=int, default=2, help="files the training split is written in")
    args = parser.parse_args()
    splits = {name: args.folder / name for name in ("train", "test") if (args.folder / name).is_dir()} \
        or {"train": args.folder}
    classes = sorted(p.name for p in splits["train"].iterdir() if p.is_dir())
    features = {"img": {"_type": "Image"}, "label": {"names": classes, "_type": "ClassLabel"}}
    (args.out / "plain_text").mkdir(parents=True)
    for split, folder in splits.items():
        files = [(label, file) for label, name in enumerate(classes)
                 for file in sorted((folder / name).iterdir()) if is_image_file(file)]
        shards = args.shards if split == "train" else 1
        per = -(-len(files) // shards)
        for shard in range(shards):
            part = files[shard * per:(shard + 1) * per]
            table = pa.table({"img": pa.array([{"bytes": f.read_bytes(), "path": f.name} for _, f in part], type=IMAGE),
                              "label": pa.array([label for label, _ in part], type=pa.int64())})
            table = table.replace_schema_metadata({"huggingface": json.dumps({"info": {"features": features}})})
            pq.write_table(table, args.out / "plain_text" / f"{split}-{shard:05d}-of-{shards:05d}.parquet")
        print(f"{split}: {len(files)} images in {shards} file{'s' if shards > 1 else ''}")


if __name__ == "__main__":
    main()
