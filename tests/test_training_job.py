"""The portable training job (issue 17): an export in, a checkpoint out, no store on the way."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from prefcurate.core.config import TrainConfig
from prefcurate.rm.train_job import UnfinishedOutput, read_result, record_training, run_training_job, verify_export
from prefcurate.rm.train import rm_run_id
from tests.support.exports import write_export
from tests.support.gpu_machine import NOT_ON_A_GPU_MACHINE, gpu_machine_paths

HEAD = TrainConfig(method="head", max_length=64, head={"layer": 1})


def test_the_job_runs_where_there_is_no_store_or_prefect(tmp_path, tiny_model_dir):
    """As on a GPU machine: no duckdb, prefect, openai or argilla installed (tests/support/gpu_machine.py)."""
    export = write_export(tmp_path / "export")
    script = f"""
import sys
sys.path[:0] = sys.argv[1:]
from prefcurate.core.config import EvaluateConfig, TrainConfig
from prefcurate.rm.train_job import run_training_job
result = run_training_job({str(export)!r}, {str(tiny_model_dir)!r}, {str(tmp_path / 'out')!r},
                          TrainConfig.model_validate({HEAD.model_dump(mode='json')!r}), "cpu",
                          EvaluateConfig(probe_responses=4))
print("RUN", result["rm_run_id"], result["eval_metrics"]["pairs"], sorted({{m.split('.')[0] for m in sys.modules}}
      & set({NOT_ON_A_GPU_MACHINE!r})))
"""
    paths = gpu_machine_paths(tmp_path / "machine")
    done = subprocess.run([sys.executable, "-S", "-c", script, *paths], capture_output=True, text=True, timeout=600,
                          cwd=paths[0])
    assert done.returncode == 0, done.stderr[-3000:]
    run_id, pairs, missing = done.stdout.split("RUN ")[1].split(maxsplit=2)
    assert missing.strip() == "[]"
    out = tmp_path / "out"
    assert {"config.json", "eval_report.json", "eval_report.md", "result.json", "train_metrics.json"} <= \
        {path.name for path in out.iterdir()}
    result = read_result(out)
    assert result["rm_run_id"] == run_id and int(pairs) == 16 and result["eval_metrics"]["accuracy"] is not None
    assert result["curation_run_id"] == "hand-written-export" and result["eval_metrics"]["candidate_reward_spread"] is None


def test_the_same_training_gets_the_same_id_on_any_machine(tmp_path, tiny_model_dir):
    export = write_export(tmp_path / "a" / "export")
    model = tiny_model_dir
    elsewhere_export = shutil.copytree(export, tmp_path / "b" / "somewhere" / "else")
    elsewhere_model = shutil.copytree(model, tmp_path / "b" / "model")
    assert rm_run_id(export, HEAD, str(model)) == rm_run_id(elsewhere_export, HEAD, str(elsewhere_model))
    assert rm_run_id(export, HEAD, str(model)) != rm_run_id(export, HEAD.model_copy(update={"seed": 1}), str(model))


def test_an_export_that_does_not_match_its_manifest_is_refused(tmp_path):
    export = write_export(tmp_path / "export")
    (export / "test.parquet").write_bytes((export / "test.parquet").read_bytes()[:-10])
    with pytest.raises(ValueError, match="test.parquet does not match manifest.json"):
        verify_export(export)


def test_recording_is_idempotent_and_an_unfinished_output_is_refused(tmp_path, store, tiny_model_dir):
    export = write_export(tmp_path / "export")
    out = tmp_path / "out"
    first = run_training_job(export, str(tiny_model_dir), out, HEAD, "cpu")
    assert not first["reused"] and first["eval_metrics"] is None
    again = run_training_job(export, str(tiny_model_dir), out, HEAD, "cpu")  # a finished output with this id
    assert again["reused"] and again["rm_run_id"] == first["rm_run_id"]
    assert record_training(store, out) == first["rm_run_id"]
    record_training(store, out)
    assert store.count("rm_runs") == 1
    assert store.one("SELECT curation_run_id, status FROM rm_runs") == ("hand-written-export", "trained")
    (out / "result.json").unlink()
    with pytest.raises(UnfinishedOutput, match="no result.json: the training job did not finish"):
        record_training(store, out)


def test_export_model_and_output_can_be_urls(tmp_path, store, tiny_model_dir):
    """fsspec URLs end to end (file:// here; tests/test_object_storage.py does s3:// on a real server)."""
    export = write_export(tmp_path / "export")
    result = run_training_job(f"file://{export}", f"file://{tiny_model_dir}", f"file://{tmp_path}/remote/rm",
                              HEAD, "cpu", cache_root=tmp_path / "cache")
    remote = tmp_path / "remote" / "rm"
    assert (remote / "result.json").is_file() and (remote / "config.json").is_file()
    assert json.loads((remote / "result.json").read_text())["rm_run_id"] == result["rm_run_id"]
    assert record_training(store, f"file://{remote}") == result["rm_run_id"]
    assert store.scalar("SELECT checkpoint_dir FROM rm_runs") == f"file://{remote}"

    # the store side scores from the URL it recorded: fetched into the workdir's cache
    from prefcurate.core.config import PrefcurateConfig
    from prefcurate.pipeline import local_checkpoint
    from prefcurate.rm.score import RewardScorer

    here = local_checkpoint(PrefcurateConfig(workdir=tmp_path / "work"), f"file://{remote}")
    assert here.is_relative_to(tmp_path / "work" / "cache") and (here / "config.json").is_file()
    item = (["Question 1?"], ["An excellent answer 1."])
    assert RewardScorer(str(here)).score(*item) == pytest.approx(RewardScorer(str(remote)).score(*item), abs=1e-6)


def test_the_cli_trains_from_an_export_without_a_store_and_records_it_with_one(tmp_path, tiny_model_dir):
    """`prefcurate train --export` as a GPU machine runs it, then `record-training` on the store side."""
    from typer.testing import CliRunner

    from prefcurate.cli import app
    from prefcurate.core.store import Store

    export = write_export(tmp_path / "export")
    config = tmp_path / "c.yaml"
    config.write_text(f"workdir: {tmp_path / 'work'}\nstore:\n  path: {tmp_path / 's.duckdb'}\n"
                      "train:\n  method: head\n  max_length: 64\n  head:\n    layer: 1\n"
                      "evaluate:\n  probe_responses: 4\n")
    out = tmp_path / "out"
    script = ("import sys\nsys.path[:0] = sys.argv[1:3]\nsys.argv = ['prefcurate'] + sys.argv[3:]\n"
              "from prefcurate.cli import main\nmain()")
    paths = gpu_machine_paths(tmp_path / "machine")
    done = subprocess.run([sys.executable, "-S", "-c", script, *paths, "train", "--config", str(config),
                           "--export", str(export), "--output", str(out), "--base-model", str(tiny_model_dir)],
                          capture_output=True, text=True, timeout=600, cwd=paths[0])
    assert done.returncode == 0, done.stderr[-3000:]
    assert "held-out accuracy:" in done.stdout and f"prefcurate record-training {out}" in done.stdout
    assert not (tmp_path / "s.duckdb").exists()  # no store was touched

    runner = CliRunner()
    for _ in range(2):
        recorded = runner.invoke(app, ["record-training", str(out), "--config", str(config)])
        assert recorded.exit_code == 0, recorded.output
    with Store(tmp_path / "s.duckdb") as store:
        assert store.one("SELECT count(*), any_value(status) FROM rm_runs") == (1, "evaluated")
    (out / "result.json").unlink()
    refused = runner.invoke(app, ["record-training", str(out), "--config", str(config)])
    assert refused.exit_code == 1 and "the training job did not finish" in refused.output
