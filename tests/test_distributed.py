"""Training under a launcher: two processes on CPU (gloo) through torchrun, as on a multi-GPU node.

Rank 0 runs train_reward_model with the store; rank 1 follows with no store. The Trainer splits
the batches between them and all-reduces gradients every step."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.exports import write_export

ROOT = Path(__file__).resolve().parent.parent

SCRIPT = r'''
import json, sys
from pathlib import Path
from prefcurate.core.config import TrainConfig
from prefcurate.rm import distributed
from prefcurate.rm.train_job import train_reward_model
from prefcurate.rm.train import follow_training

curated, base, out, report = map(Path, sys.argv[1:5])
config = TrainConfig(method="finetune", epochs=4, batch_size=8, learning_rate=3e-3, trainable_layers=None, max_length=64)
if distributed.rank() == 0:
    from prefcurate.core.store import Store
    with Store(out / "store.duckdb") as store:
        result, _ = train_reward_model(store, "run-1", curated, str(base), config, out / "rm", "cpu")
        rows = store.count("rm_runs")
    report.write_text(json.dumps({"metrics": result.metrics, "checkpoint": str(result.checkpoint_dir), "rows": rows}))
else:
    assert follow_training("cpu")
'''


@pytest.mark.slow
def test_two_ranks_train_one_model_and_only_rank_0_touches_the_store(tmp_path, tiny_model_dir):
    curated = write_export(tmp_path / "curated")
    script = tmp_path / "launch.py"
    script.write_text(SCRIPT)
    report = tmp_path / "report.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29517",
                           str(script), str(curated), str(tiny_model_dir), str(tmp_path), str(report)],
                          capture_output=True, text=True, env=env, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    outcome = json.loads(report.read_text())
    # 48 pairs, 8 per rank per step, 2 ranks: 3 steps an epoch (one process alone takes 6).
    assert outcome["metrics"]["steps"] == 4 * 3
    assert outcome["metrics"]["mean_loss_last_epoch"] < 0.6
    assert outcome["rows"] == 1
    assert (Path(outcome["checkpoint"]) / "config.json").is_file()
    assert sorted(p.name for p in tmp_path.iterdir() if p.suffix == ".duckdb") == ["store.duckdb"]


@pytest.mark.slow
def test_prefcurate_train_under_torchrun_records_one_run(tmp_path, pipeline_config, openai_server,
                                                        prefect_harness):
    """The command a multi-GPU node runs: `torchrun -m prefcurate.cli train` on a pipeline's store.
    Rank 0 runs the Prefect flow; rank 1 joins the training without opening the store."""
    import duckdb
    import yaml

    from prefcurate.flows.stages import pipeline_flow

    pipeline_flow(pipeline_config)  # one process: a curated set and a first reward model
    config = pipeline_config.model_dump(mode="json")
    config["train"]["epochs"] = 2  # a new run id: train again, this time under the launcher
    config_file = tmp_path / "launch.yaml"
    config_file.write_text(yaml.safe_dump(config))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("PREFECT_API_URL", None)  # rank 0 starts its own temporary Prefect server, as a user's would
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29518",
                           "-m", "prefcurate.cli", "train", "--config", str(config_file)],
                          capture_output=True, text=True, env=env, timeout=600, cwd=ROOT)
    assert done.returncode == 0, (done.stdout[-2000:], done.stderr[-3000:])
    with duckdb.connect(str(pipeline_config.store.path), read_only=True) as con:
        runs = con.execute("SELECT train_metrics FROM rm_runs").fetchall()
    assert len(runs) == 2
    epochs_two = [json.loads(row[0]) for row in runs if json.loads(row[0])["epochs"] == 2]
    assert len(epochs_two) == 1
    pairs = epochs_two[0]["train_pairs"]
    per_rank_batch = pipeline_config.train.batch_size
    assert epochs_two[0]["steps"] == 2 * -(-pairs // (2 * per_rank_batch))  # batches split between the 2 ranks
