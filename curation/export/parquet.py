"""Export a curation run as Parquet per split plus a manifest.

Columns follow TRL's explicit-prompt preference format (`prompt`, `chosen`, `rejected`) with
metadata beside them (`prompt_messages` holds a multi-turn prompt's conversation), so `datasets.load_dataset("parquet", ...)` and TRL's RewardTrainer read the
files as they are. Rows are sorted by pair_id and written without timestamps: the same run
exports byte-identical files.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from prefcurate.core.hashing import file_sha256
from prefcurate.core.store import Store

from prefcurate.core.config import SPLITS
EXPORT_SCHEMA = pa.schema([
    ("prompt", pa.string()), ("chosen", pa.string()), ("rejected", pa.string()),
    ("pair_id", pa.string()), ("prompt_id", pa.string()), ("chosen_id", pa.string()),
    ("rejected_id", pa.string()), ("label_source", pa.string()), ("confidence", pa.float64()), ("agreement", pa.float64()),
    ("n_votes", pa.int64()),
    # The conversation before the answers as JSON chat messages, for multi-turn (imported) prompts;
    # null for single-turn ones, whose `prompt` is the user's message.
    ("prompt_messages", pa.string()),
    # True for pairs kept as ties (curate.ties: keep): chosen/rejected are then just the two responses.
    ("tie", pa.bool_()),
    # The two responses' scores (mean over their raters: rating and ranking judges, annotators, rated
    # imports), null when unscored; score_margin is their difference as a share of the scale, the
    # margin train.margin: score reads.
    ("chosen_score", pa.float64()), ("rejected_score", pa.float64()), ("score_margin", pa.float64()),
])


def export_curation_run(store: Store, curation_run_id: str, output_root: Path, manifest_extra: dict) -> Path:
    out = Path(output_root) / curation_run_id[:16]
    out.mkdir(parents=True, exist_ok=True)
    files, empty = {}, []
    columns = ", ".join(EXPORT_SCHEMA.names)
    for split in SPLITS:
        table = store.con.sql(
            f"SELECT {columns} FROM curated_pairs_export WHERE curation_run_id = $run AND split = $split "
            "ORDER BY pair_id", params={"run": curation_run_id, "split": split}).to_arrow_table()
        table = table.cast(EXPORT_SCHEMA)
        path = out / f"{split}.parquet"
        if table.num_rows == 0:
            # `datasets` cannot read an empty Parquet file; an empty split is listed, not written.
            path.unlink(missing_ok=True)
            empty.append(split)
            continue
        pq.write_table(table, path, compression="zstd")
        files[split] = {"path": path.name, "rows": table.num_rows, "sha256": file_sha256(path)}

    manifest = {
        "curation_run_id": curation_run_id,
        "exported_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "store": str(Path(store.path).resolve()),
        "format": {"columns": EXPORT_SCHEMA.names, "style": "trl-explicit-prompt-preference"},
        "files": files,
        "empty_splits": empty,
        "load_with": f"datasets.load_dataset('parquet', data_files={{s: '{out}/' + s + '.parquet' for s in {list(files)}}})",
        **manifest_extra,
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2, default=str) + "\n", encoding="utf-8")
    return out
