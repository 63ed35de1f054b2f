"""Curated exports written by hand, for reward-model tests."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq


def write_export(folder, n_train=48, n_test=16):
    """A planted preference: the chosen response says 'excellent', the rejected one 'terrible'."""
    folder.mkdir(parents=True)
    files = {}
    for split, n in (("train", n_train), ("test", n_test)):
        rows = [{"prompt": f"Question {i}?", "chosen": f"An excellent answer {i}.",
                 "rejected": f"A terrible answer {i}."} for i in range(n)]
        pq.write_table(pa.Table.from_pylist(rows), folder / f"{split}.parquet")
        files[split] = {"sha256": str(hash(split)), "rows": n}
    (folder / "manifest.json").write_text(json.dumps({"files": files}))
    return folder
