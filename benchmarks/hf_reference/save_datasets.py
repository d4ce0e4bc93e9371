"""Hugging Face datasets' own files, for tests/test_hub_datasets.py to read with cnnlab: run in
the reference environment (`make bench-env`), never cnnlab's.

    python save_datasets.py IMAGES OUT

IMAGES holds class folders of image files. OUT gets, from one DatasetDict (train and
validation, an Image column, a ClassLabel ``label`` whose names are the folders' in reverse
order, and a second ClassLabel ``coarse``):

- ``saved/``: what ``DatasetDict.save_to_disk`` writes (Arrow streams, dataset_info.json);
- ``hub/data/``: parquet shards as the Hub stores a pushed dataset (the images' bytes
  embedded, as ``push_to_hub`` embeds them; ``SPLIT-00000-of-00001.parquet``);
- ``expected.json``: per split, each row's file, label and coarse label.
"""

import json
import sys
from pathlib import Path

from datasets import ClassLabel, Dataset, DatasetDict, Features, Image
from datasets.table import embed_table_storage


def main(images: Path, out: Path) -> None:
    classes = sorted(p.name for p in images.iterdir() if p.is_dir())[::-1]
    files = [(str(f), i) for i, name in enumerate(classes) for f in sorted((images / name).iterdir()) if f.is_file()]
    features = Features({"image": Image(), "label": ClassLabel(names=classes),
                         "coarse": ClassLabel(names=["even", "odd"])})
    rows = {"image": [f for f, _ in files], "label": [i for _, i in files], "coarse": [i % 2 for _, i in files]}
    whole = Dataset.from_dict(rows, features=features)
    splits = DatasetDict({"train": whole.select(range(0, len(whole), 2)).flatten_indices(),
                          "validation": whole.select(range(1, len(whole), 2)).flatten_indices()})
    splits.save_to_disk(str(out / "saved"))
    expected = {}
    for name, split in splits.items():
        embedded = split.with_format("arrow").map(embed_table_storage, batched=True).with_format(None)
        embedded.to_parquet(str(out / "hub" / "data" / f"{name}-00000-of-00001.parquet"))
        table = split.data.table
        expected[name] = {"files": [row["path"] for row in table.column("image").to_pylist()],
                          "label": table.column("label").to_pylist(), "coarse": table.column("coarse").to_pylist()}
    (out / "expected.json").write_text(json.dumps({"classes": classes, "splits": expected}))


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
