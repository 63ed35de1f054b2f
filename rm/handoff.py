"""Handing training to another machine: what travels is locations, never this machine's paths.

The curated export, and the base model when it is a local folder (the embedded model, a refresh
round's warm start), are published under train.storage by content (exports/<export fingerprint>,
models/<model fingerprint>): handing the same content over again uploads nothing. The job (rm/train_job.py,
on whichever machine a work pool puts it) writes to rm/<run id> there, and the store side records that
output (record_training) once the job has finished. A hub name travels as the name: the job's machine
loads it from its own hub cache.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from prefcurate.core.config import TrainConfig
from prefcurate.core.local_models import model_fingerprint
from prefcurate.core.locations import is_url, publish_folder, read_text
from prefcurate.rm.train import export_fingerprint, rm_run_id

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainingHandoff:
    """What a training job elsewhere is given (locations every machine reaches) and the run id the
    store side expects back (the job computes its own from the same content)."""

    export: str
    base_model: str
    output: str
    rm_run_id: str


def location(storage: str, *parts: str) -> str:
    """A location under storage: a URL stays a URL; a shared folder becomes an absolute path."""
    if is_url(storage):
        return "/".join([storage.rstrip("/"), *parts])
    return str(Path(storage).expanduser().resolve().joinpath(*parts))


def publish_once(local: Path, target: str, marker: str) -> bool:
    """Publish a folder unless the target already holds it (its marker file, written last, is
    there). Returns whether anything was uploaded."""
    if read_text(target, marker) is not None:
        return False
    files = [path for path in Path(local).rglob("*") if path.is_file()]
    size_mb = sum(path.stat().st_size for path in files) / 1e6
    log.info("train: uploading %s (%d files, %.1f MB) to %s", local, len(files), size_mb, target)
    publish_folder(local, target, last=marker)
    return True


def prepare_handoff(curated_dir: Path, base_model: str, config: TrainConfig) -> TrainingHandoff:
    """Publish the export (and a local base model) under config.storage; returns the job's locations."""
    if not config.storage:
        raise ValueError("train.storage: not set; a training job elsewhere needs a location both machines reach")
    export = location(config.storage, "exports", export_fingerprint(curated_dir)[:16])
    publish_once(Path(curated_dir), export, marker="manifest.json")
    model = base_model
    if not is_url(base_model) and Path(base_model).is_dir():
        model = location(config.storage, "models", model_fingerprint(base_model)[:16])
        publish_once(Path(base_model), model, marker="config.json")
    run_id = rm_run_id(Path(curated_dir), config, base_model)
    return TrainingHandoff(export, model, location(config.storage, "rm", run_id[:16]), run_id)
