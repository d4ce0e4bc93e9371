"""A GTSRB test set made the way re-distributed ones are, from a run's own validation tracks:
each image resized to 32x32 while Test.csv keeps its original size and sign box (the Kaggle
layout). Evaluating the run on it shows what such a test set costs against the run's own
validation accuracy (docs/results.md):

    python benchmarks/resized_gtsrb_test.py RUN GTSRB_FOLDER OUT
    cnnlab evaluate RUN --data gtsrb:OUT
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

from PIL import Image


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="a run trained on GTSRB in the Kaggle layout")
    parser.add_argument("source", type=Path, help="the GTSRB folder it was trained on (holds Train.csv)")
    parser.add_argument("out", type=Path, help="new folder for Test/ and Test.csv")
    parser.add_argument("--size", type=int, default=32)
    args = parser.parse_args()
    validation = set(json.loads((args.run / "split.json").read_text())["val"])
    with (args.source / "Train.csv").open(newline="") as handle:
        rows = [row for row in csv.DictReader(handle) if row["Path"] in validation]
    (args.out / "Test").mkdir(parents=True, exist_ok=True)
    for number, row in enumerate(rows):
        name = f"Test/{number:05d}.png"
        with Image.open(args.source / row["Path"]) as image:
            image.convert("RGB").resize((args.size, args.size), Image.Resampling.BILINEAR).save(args.out / name)
        row["Path"] = name
    with (args.out / "Test.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]) if rows else ["Path"])
        writer.writeheader()
        writer.writerows(rows)
    print(f"{len(rows)} images in {args.out}")


if __name__ == "__main__":
    main()
