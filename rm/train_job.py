"""The portable training job: a curated export in, a reward model out, and no store.

The export (its folder: manifest.json and the Parquet splits) and the base model come as local
paths or fsspec URLs; the output goes to a path or URL. The job checks every export file against
its manifest's sha256, trains (rm/train.py), optionally evaluates on the export's held-out split
(rm/evaluate.py, without the store's candidates), and writes the HF checkpoint, the reports and
`result.json` (run id, metrics, config, the export's fingerprint). result.json is written last:
an output without it is unfinished, and the store side refuses to record it.

The run id comes from content (the export's file hashes, the base model's file hashes, the training
config), so the same training has the same id on any machine, and finding a finished output with
that id is a cache hit. The store side (`record_training`) reads result.json into rm_runs;
recording the same output again changes nothing.
"""

from __future__ import annotations

import json
import logging
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from prefcurate.core.config import EvaluateConfig, TrainConfig
from prefcurate.core.hashing import file_sha256
from prefcurate.core.locations import fetch_folder, is_url, publish_folder, read_text
from prefcurate.rm import distributed
from prefcurate.core.stage_report import StageReport
from prefcurate.rm.train import STAGE, TrainResult, export_fingerprint, rm_run_id, train_checkpoint

if TYPE_CHECKING:
    from prefcurate.core.store import Store

log = logging.getLogger(__name__)
RESULT_FILE = "result.json"
RESULT_VERSION = 1


class UnfinishedOutput(RuntimeError):
    """An output folder without result.json: the job that wrote it did not finish."""


def verify_export(export_dir: Path) -> dict:
    """The manifest, after checking that every file it lists is there with its sha256."""
    manifest_path = export_dir / "manifest.json"
    if not manifest_path.is_file():
        raise FileNotFoundError(f"{export_dir}: no manifest.json: not a curated export (`prefcurate curate` writes one)")
    manifest = json.loads(manifest_path.read_text())
    for split, entry in manifest["files"].items():
        path = export_dir / Path(entry["path"]).name
        if not path.is_file():
            raise FileNotFoundError(f"{export_dir}: {path.name} ({split}) is listed in manifest.json but missing")
        digest = file_sha256(path)
        if digest != entry["sha256"]:
            raise ValueError(f"{export_dir}: {path.name} does not match manifest.json (sha256 {digest[:12]}, "
                             f"expected {entry['sha256'][:12]}): a partial copy?")
    return manifest


def read_result(output: str | Path) -> dict | None:
    text = read_text(output, RESULT_FILE)
    return None if text is None else json.loads(text)


def run_training_job(export: str | Path, base_model: str | Path, output: str | Path, config: TrainConfig,
                     device: str, evaluate: EvaluateConfig | None = None,
                     cache_root: Path | None = None) -> dict | None:
    """Train (and evaluate) into `output`; returns result.json's content (None on ranks other than 0
    under a launcher, which train and write nothing)."""
    cache_root = cache_root or Path(tempfile.gettempdir()) / "prefcurate-job-cache"
    export_dir = fetch_folder(export, cache_root / "exports")
    manifest = verify_export(export_dir)
    base_model_path = str(fetch_folder(base_model, cache_root / "models")) if is_url(base_model) else str(base_model)
    run_id = rm_run_id(export_dir, config, base_model_path)

    finished = read_result(output)
    if finished is not None and finished.get("rm_run_id") == run_id:
        log.info("train: %s already holds the finished run %s", output, run_id[:16])
        distributed.share_plan(None, device)  # under a launcher: nothing for the other ranks to train
        return {**finished, "reused": True}

    with tempfile.TemporaryDirectory(prefix="prefcurate-job-") as scratch:
        local = Path(scratch) / "out" if is_url(output) else Path(output)
        local.mkdir(parents=True, exist_ok=True)
        (local / RESULT_FILE).unlink(missing_ok=True)  # an older run's marker would vouch for new files
        metrics = train_checkpoint(export_dir, base_model_path, config, device, local)
        if distributed.rank() != 0:
            return None
        eval_metrics = None
        if evaluate is not None:
            from prefcurate.rm.evaluate import evaluate_checkpoint

            eval_metrics, _report = evaluate_checkpoint(run_id, local, export_dir, evaluate, device, config.max_length)
        result = {
            "version": RESULT_VERSION, "rm_run_id": run_id, "export": str(export),
            "export_fingerprint": export_fingerprint(export_dir), "curation_run_id": manifest.get("curation_run_id"),
            "base_model": str(base_model), "config": config.recipe(),
            "train_metrics": metrics, "eval_metrics": eval_metrics,
        }
        (local / "train_metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
        (local / "training_config.json").write_text(json.dumps(
            {key: result[key] for key in ("rm_run_id", "export", "curation_run_id", "base_model", "config")},
            indent=2) + "\n")
        (local / RESULT_FILE).write_text(json.dumps(result, indent=2) + "\n")
        publish_folder(local, output, last=RESULT_FILE)
    return {**result, "reused": False}


def record_training(store: Store, output: str | Path, curation_run_id: str | None = None) -> str:
    """Record a finished job's output in rm_runs (the store side of the hand-off); idempotent.
    Returns the run id."""
    result = read_result(output)
    if result is None:
        raise UnfinishedOutput(f"{output}: no {RESULT_FILE}: the training job did not finish (or this is not its "
                               "output); nothing recorded")
    evaluated = result.get("eval_metrics")
    # A later evaluation on the store side (with the store's candidates) is kept, not overwritten.
    store.con.execute(
        "INSERT INTO rm_runs (rm_run_id, curation_run_id, base_model, checkpoint_dir, config, status, train_metrics,"
        " eval_metrics) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (rm_run_id) DO UPDATE SET"
        " checkpoint_dir = excluded.checkpoint_dir, train_metrics = excluded.train_metrics,"
        " eval_metrics = coalesce(rm_runs.eval_metrics, excluded.eval_metrics),"
        " status = CASE WHEN coalesce(rm_runs.eval_metrics, excluded.eval_metrics) IS NULL THEN 'trained'"
        " ELSE 'evaluated' END",
        [result["rm_run_id"], curation_run_id or result.get("curation_run_id"), result["base_model"], str(output),
         json.dumps(result["config"]), "evaluated" if evaluated else "trained", json.dumps(result["train_metrics"]),
         None if evaluated is None else json.dumps(evaluated)])
    return result["rm_run_id"]


def train_reward_model(store: Store, curation_run_id: str, curated_dir: Path, base_model_path: str,
                       config: TrainConfig, output_root: Path, device: str) -> tuple[TrainResult, StageReport]:
    """The train stage on the store's machine: the portable job (rm/train_job.py) into
    <output_root>/<run id>, then its result recorded in rm_runs."""
    run_id = rm_run_id(curated_dir, config, base_model_path)
    checkpoint_dir = Path(output_root) / run_id[:16]
    report = StageReport(STAGE, details={"rm_run_id": run_id, "checkpoint": str(checkpoint_dir), "device": device})
    result = run_training_job(curated_dir, base_model_path, checkpoint_dir, config, device)
    if result is None:  # a rank other than 0 under a launcher: nothing to record
        return TrainResult(run_id, checkpoint_dir, {}, reused=False), report.finish()
    record_training(store, checkpoint_dir, curation_run_id)
    return TrainResult(run_id, checkpoint_dir, result["train_metrics"], reused=result["reused"]), \
        training_report(report, result)


def record_placed_training(store: Store, output: str, curation_run_id: str, placed: dict) -> StageReport:
    """The train stage's store side when the job ran elsewhere (on a work pool): record its output."""
    run_id = record_training(store, output, curation_run_id)
    result = read_result(output)
    report = StageReport(STAGE, details={"rm_run_id": run_id, "checkpoint": output, **placed})
    return training_report(report, {**result, "reused": placed.get("reused", False)})


def training_report(report: StageReport, result: dict) -> StageReport:
    """The train stage's counts and figures, from a job's result."""
    metrics = result["train_metrics"]
    report.count_in = report.count_out = metrics["train_pairs"]
    first = metrics["members"][0] if metrics.get("members") else {}
    report.details.update(reused=result["reused"], method=metrics.get("method"),
                          final_loss=None if first.get("final_loss") is None else round(first["final_loss"], 4),
                          validation_accuracy=metrics.get("validation_accuracy"),
                          truncated=metrics.get("truncated_sequences"), members=metrics.get("ensemble_members"),
                          tokens_per_second=metrics.get("tokens_per_second"))
    return report.finish()
