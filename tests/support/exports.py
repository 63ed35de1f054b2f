"""Curated exports written by hand, for reward-model tests."""

from __future__ import annotations

import hashlib
import json

import pyarrow as pa
import pyarrow.parquet as pq


def write_manifest(folder, splits=("train", "validation", "test")) -> None:
    """manifest.json for the Parquet splits in folder, with their real sha256 (jobs check them)."""
    files = {}
    for split in splits:
        path = folder / f"{split}.parquet"
        if path.is_file():
            files[split] = {"path": path.name, "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
                            "rows": pq.read_metadata(path).num_rows}
    (folder / "manifest.json").write_text(json.dumps({"curation_run_id": f"hand-written-{folder.name}",
                                                      "files": files}))


def write_export(folder, n_train=48, n_test=16):
    """A planted preference: the chosen response says 'excellent', the rejected one 'terrible'."""
    folder.mkdir(parents=True)
    files = {}
    for split, n in (("train", n_train), ("test", n_test)):
        rows = [{"prompt": f"Question {i}?", "chosen": f"An excellent answer {i}.",
                 "rejected": f"A terrible answer {i}."} for i in range(n)]
        path = folder / f"{split}.parquet"
        pq.write_table(pa.Table.from_pylist(rows), path)
        files[split] = {"path": path.name, "sha256": hashlib.sha256(path.read_bytes()).hexdigest(), "rows": n}
    (folder / "manifest.json").write_text(json.dumps({"curation_run_id": f"hand-written-{folder.name}",
                                                      "files": files}))
    return folder
