"""Training placed elsewhere (issue 17, part 2): with train.work_pool set, the train stage hands the
job locations under train.storage (never this machine's paths), waits while the store stays free,
and records the output. The slow tests run it through a real Prefect server with two process work
pools (a CPU one for the pipeline's flows, one standing in for the GPU pool), a worker on each, and
storage on a real S3-compatible server (moto) or a plain folder."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from prefcurate import pipeline
from prefcurate.core.config import ConfigError, config_from_dict
from prefcurate.core.stage_report import StageFailed
from prefcurate.core.store import Store
from prefcurate.rm.train_job import read_result
from prefcurate.rm.train import rm_run_id
from tests.support.builders import judged_store
from tests.support.gpu_machine import NOT_ON_A_GPU_MACHINE, gpu_machine_paths

BIN = Path(sys.executable).parent
HEAD_TRAIN = {"method": "head", "max_length": 64, "head": {"layer": 1}}


def placed_config(tmp_path: Path, model: Path, storage: str, **train) -> dict:
    return {
        "workdir": str(tmp_path / "out"), "store": {"path": str(tmp_path / "store.duckdb")},
        "curate": {"dedup": {"near": {"enabled": False}}, "splits": {"validation": 0.0, "test": 0.25}},
        "train": {**HEAD_TRAIN, "base_model": str(model), "work_pool": "gpu", "storage": storage, **train},
        "evaluate": {"probe_responses": 4},
    }


def curated(tmp_path: Path, data: dict):
    judged_store(Path(data["store"]["path"]), 16)
    config = config_from_dict(data)
    pipeline.curate_stage(config)
    return config


def test_a_work_pool_needs_a_storage_both_machines_reach(tmp_path):
    with pytest.raises(ConfigError, match="train.work_pool needs train.storage"):
        config_from_dict({"train": {"work_pool": "gpu"}})


def test_where_training_runs_is_not_part_of_the_recipe(tmp_path, tiny_model_dir):
    from tests.support.exports import write_export

    export = write_export(tmp_path / "export")
    here = config_from_dict({"train": HEAD_TRAIN}).train
    there = config_from_dict({"train": {**HEAD_TRAIN, "work_pool": "gpu", "storage": "s3://b/p",
                                        "job_variables": {"image": "x"}}}).train
    assert rm_run_id(export, here, str(tiny_model_dir)) == rm_run_id(export, there, str(tiny_model_dir))
    assert "work_pool" not in there.recipe() and there.recipe() == here.recipe()


def test_a_work_pool_without_prefect_placement_is_refused_before_anything_moves(tmp_path, tiny_model_dir):
    config = curated(tmp_path, placed_config(tmp_path, tiny_model_dir, str(tmp_path / "shared")))
    with pytest.raises(StageFailed, match="training runs on that pool through Prefect"):
        pipeline.train_stage(config)
    assert not (tmp_path / "shared").exists()


@pytest.mark.slow  # a real training job in a process like a GPU machine's
def test_the_handoff_moves_locations_only_and_the_store_records_the_shared_output(tmp_path, tiny_model_dir):
    """Storage is a plain shared folder; the job runs in a process like a GPU machine's (no duckdb or
    Prefect installed) and is given nothing but the handoff's locations."""
    shared = tmp_path / "shared"
    config = curated(tmp_path, placed_config(tmp_path, tiny_model_dir, str(shared)))
    paths = gpu_machine_paths(tmp_path / "machine")
    handed = []

    def place(handoff, config):
        handed.append(handoff)
        script = f"""
import sys
sys.path[:0] = sys.argv[1:]
from prefcurate.core.config import EvaluateConfig, TrainConfig
from prefcurate.rm.train_job import run_training_job
run_training_job({handoff.export!r}, {handoff.base_model!r}, {handoff.output!r},
                 TrainConfig.model_validate({config.train.recipe()!r}), "cpu", EvaluateConfig(probe_responses=4))
print("LOADED", sorted({{m.split('.')[0] for m in sys.modules}} & set({NOT_ON_A_GPU_MACHINE!r})))
"""
        done = subprocess.run([sys.executable, "-S", "-c", script, *paths], capture_output=True, text=True,
                              timeout=600, cwd=paths[0])
        assert done.returncode == 0, done.stderr[-3000:]
        assert done.stdout.split("LOADED ")[1].strip() == "[]"
        return {"work_pool": config.train.work_pool, "flow_run": "in-test"}

    summary = pipeline.train_stage(config, place=place)
    handoff = handed[0]
    for location in (handoff.export, handoff.base_model, handoff.output):
        assert Path(location).is_relative_to(shared), location
    assert (Path(handoff.export) / "manifest.json").is_file()
    assert (Path(handoff.base_model) / "config.json").is_file()  # the local base model travelled too
    result = read_result(handoff.output)
    assert summary["rm_run_id"] == result["rm_run_id"] == handoff.rm_run_id
    assert summary["checkpoint"] == handoff.output and summary["work_pool"] == "gpu"
    assert summary["count_out"] == result["train_metrics"]["train_pairs"] > 0
    with Store(config.store.path, read_only=True) as store:
        assert store.one("SELECT checkpoint_dir, status FROM rm_runs") == (handoff.output, "evaluated")
    uploaded = {path: path.stat().st_mtime_ns for path in shared.rglob("*") if path.is_file()}

    again = pipeline.train_stage(config, place=place)  # same content: nothing uploaded, nothing new recorded
    assert again["rm_run_id"] == summary["rm_run_id"] and handed[1] == handoff
    assert {path: mtime for path, mtime in uploaded.items() if "exports" in path.parts or "models" in path.parts} == \
        {path: path.stat().st_mtime_ns for path in uploaded if "exports" in path.parts or "models" in path.parts}
    with Store(config.store.path, read_only=True) as store:
        assert store.count("rm_runs") == 1

    evaluated = pipeline.evaluate_stage(config)  # the store side evaluates from the shared checkpoint
    assert evaluated["rm_run_id"] == summary["rm_run_id"]


def write_config(tmp_path: Path, data: dict) -> Path:
    path = tmp_path / "prefcurate.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.slow  # a real `prefcurate train` process
def test_without_a_prefect_server_the_command_says_what_to_start(tmp_path, tiny_model_dir):
    config_path = write_config(tmp_path, placed_config(tmp_path, tiny_model_dir, str(tmp_path / "shared")))
    curated(tmp_path, yaml.safe_load(config_path.read_text()))
    env = {key: value for key, value in os.environ.items() if key != "PREFECT_API_URL"}
    done = subprocess.run([str(BIN / "prefcurate"), "train", "--config", str(config_path)], env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 1, done.stdout + done.stderr
    lines = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "train.work_pool needs a Prefect server" in lines[0] and "PREFECT_API_URL" in lines[0]
    assert "Traceback" not in done.stderr and not (tmp_path / "shared").exists()


# -- through Prefect: two process work pools, a worker on each, S3 on moto ---------------------------

# As if duckdb were not installed: `import duckdb` fails and importlib.util.find_spec says None.
BLOCK_DUCKDB = "import sys\nsys.modules['duckdb'] = None\n"


@pytest.fixture(scope="module")
def services(tmp_path_factory, shared_prefect_server):
    """The session's Prefect server, S3 on moto, a CPU pool's worker and a GPU pool's worker (on
    which duckdb cannot be imported, as on a machine without the store)."""
    from tests.support.services import process_worker, s3_server

    api, env = shared_prefect_server
    folder = tmp_path_factory.mktemp("placement-services")
    no_duckdb = folder / "no-duckdb"
    no_duckdb.mkdir()
    (no_duckdb / "sitecustomize.py").write_text(BLOCK_DUCKDB)
    with s3_server(folder, "prefcurate-test") as s3_env:
        env = {**env, **s3_env}
        gpu_env = {**env, "PYTHONPATH": os.pathsep.join(filter(None, [str(no_duckdb), env.get("PYTHONPATH")]))}
        with process_worker("cpu", env, folder / "cpu-worker.log"), \
                process_worker("gpu", gpu_env, folder / "gpu-worker.log"):
            yield {"api": api, "env": env, "folder": folder}


def flow_runs(api: str, **filters) -> list:
    """The runs with these attributes, narrowed on the server by pool or id first: the session's
    server holds other tests' runs too, more than one unfiltered read returns (200)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId, WorkPoolFilter, WorkPoolFilterName
    from prefect.settings import PREFECT_API_URL, temporary_settings

    narrowed = {}
    if "work_pool_name" in filters:
        narrowed["work_pool_filter"] = WorkPoolFilter(name=WorkPoolFilterName(any_=[filters["work_pool_name"]]))
    if "id" in filters:
        narrowed["flow_run_filter"] = FlowRunFilter(id=FlowRunFilterId(any_=[filters["id"]]))
    with temporary_settings(updates={PREFECT_API_URL: api}), get_client(sync_client=True) as client:
        return [run for run in client.read_flow_runs(**narrowed)
                if all(getattr(run, k) == v for k, v in filters.items())]


def deploy(config_path: Path, env: dict, *args: str) -> str:
    done = subprocess.run([str(BIN / "prefcurate"), "deploy", "--config", str(config_path), *args], env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


@pytest.mark.slow
def test_a_cpu_pool_flow_trains_on_the_gpu_pool_through_s3(services, tmp_path, tiny_model_dir, monkeypatch):
    from prefect.deployments import run_deployment
    from prefect.settings import PREFECT_API_URL, temporary_settings

    api, env = services["api"], services["env"]
    data = {**placed_config(tmp_path, tiny_model_dir, "s3://prefcurate-test/handoff"),
            "serve": {"schedules": {"retrain-nightly": {"flow": "train", "cron": "0 3 * * *"}}}}
    config_path = write_config(tmp_path, data)
    curated(tmp_path, data)
    said = deploy(config_path, env, "--work-pool", "cpu")
    assert "work pool 'gpu': train-job/gpu" in said and "work pool 'cpu': train/retrain-nightly" in said

    for key in (key for key in env if key.startswith("AWS_")):  # this side reads S3 too
        monkeypatch.setenv(key, env[key])
    with temporary_settings(updates={PREFECT_API_URL: api}):
        parent = run_deployment("train/retrain-nightly", timeout=600, poll_interval=1)
    assert parent.state.is_completed(), parent.state
    assert parent.work_pool_name == "cpu"
    [child] = flow_runs(api, work_pool_name="gpu")
    assert child.state.is_completed() and child.parent_task_run_id is not None  # a subflow of the parent's
    locations = [child.parameters[key] for key in ("export", "base_model", "output")]
    assert all(value.startswith("s3://prefcurate-test/handoff/") for value in locations), locations
    assert str(tmp_path) not in json.dumps(child.parameters)  # nothing of the store machine's paths

    with Store(tmp_path / "store.duckdb", read_only=True) as store:
        checkpoint, status = store.one("SELECT checkpoint_dir, status FROM rm_runs")
    assert checkpoint == child.parameters["output"] and status == "evaluated"
    assert read_result(checkpoint)["eval_metrics"]["pairs"] > 0
    # The store side, from the checkpoint fetched from S3, on a temporary server of its own: with the
    # default home, not the session server's (two servers on one SQLite database lock each other out).
    store_side = {k: v for k, v in env.items() if k not in ("PREFECT_API_URL", "PREFECT_HOME")}
    evaluated = subprocess.run([str(BIN / "prefcurate"), "evaluate", "--config", str(config_path)],
                               env=store_side, capture_output=True, text=True, timeout=600)
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]


@pytest.mark.slow
def test_ctrl_c_on_the_parent_cancels_the_training_run(services, tmp_path, tiny_model_dir):
    """A fine-tune long enough to be caught running; storage is a plain shared folder."""
    api, env = services["api"], services["env"]
    data = placed_config(tmp_path, tiny_model_dir, str(tmp_path / "shared"), method="finetune", epochs=5000,
                         trainable_layers=None)
    config_path = write_config(tmp_path, data)
    curated(tmp_path, data)
    deploy(config_path, env)
    with open(tmp_path / "train.log", "wb") as log:
        parent = subprocess.Popen([str(BIN / "prefcurate"), "train", "--config", str(config_path)], env=env,
                                  stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        from tests.support.services import wait_until

        try:
            running = wait_until(lambda: [run for run in flow_runs(api, work_pool_name="gpu")
                                          if run.state.is_running() and str(tmp_path) in run.parameters["output"]],
                                 240, "the training run to start on the gpu pool", interval_s=1)
            os.killpg(parent.pid, signal.SIGINT)
            assert parent.wait(timeout=60) == 130
        finally:
            if parent.poll() is None:
                os.killpg(parent.pid, signal.SIGKILL)
    child_id = running[0].id
    wait_until(lambda: [run for run in flow_runs(api, id=child_id) if run.state.is_cancelled()], 90,
               "the training run to be cancelled")
    with Store(tmp_path / "store.duckdb", read_only=True) as store:
        assert store.count("rm_runs") == 0


@pytest.mark.slow
def test_a_pool_without_a_deployment_or_a_worker_fails_with_what_to_do(services, tmp_path, tiny_model_dir):
    api, env = services["api"], services["env"]
    data = placed_config(tmp_path, tiny_model_dir, str(tmp_path / "shared"), work_pool="idle", wait_for_worker_s=3)
    config_path = write_config(tmp_path, data)
    curated(tmp_path, data)

    def train() -> subprocess.CompletedProcess:
        return subprocess.run([str(BIN / "prefcurate"), "train", "--config", str(config_path)], env=env,
                              capture_output=True, text=True, timeout=300)

    undeployed = train()
    assert undeployed.returncode == 1 and "no deployment train-job/idle" in undeployed.stderr
    assert "prefcurate deploy" in undeployed.stderr and "Traceback" not in undeployed.stderr
    subprocess.run([str(BIN / "prefect"), "work-pool", "create", "idle", "--type", "process"], env=env, check=True,
                   capture_output=True)
    deploy(config_path, env)
    unattended = train()
    assert unattended.returncode == 1
    assert "no worker of work pool idle started the training run in 3 s" in unattended.stderr
    [run] = flow_runs(api, work_pool_name="idle")
    assert run.state.is_cancelled()


@pytest.mark.slow
def test_the_pipeline_and_a_refresh_round_train_on_the_gpu_pool(services, pipeline_config, monkeypatch):
    """The flows run here (the store's machine), each training on the GPU pool through S3: the
    pipeline's first model, then a refresh round's warm-started retraining from that model."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from prefcurate.flows.refresh import refresh_flow
    from prefcurate.flows.stages import pipeline_flow
    from prefcurate.flows.training import deploy_training
    from prefcurate.core.config import PromotionGate

    api, env = services["api"], services["env"]
    for key in (key for key in env if key.startswith("AWS_")):
        monkeypatch.setenv(key, env[key])
    config = pipeline_config
    config.train = config.train.model_copy(update={"work_pool": "gpu", "storage": "s3://prefcurate-test/refresh"})
    config.refresh.prompts_per_round, config.refresh.on_policy_heldout = 8, 0.5
    config.refresh.gate = PromotionGate(min_on_policy_gain=-1.0, max_fixed_drop=1.0, min_relative_spread=0.0,
                                        min_heldout_pairs=1)
    with temporary_settings(updates={PREFECT_API_URL: api}):
        deploy_training(config)
        pipeline_flow(config)
        round_one = refresh_flow(config)
    assert round_one["round"] == 1 and round_one["decision"] == "promoted", round_one["reason"]
    with Store(config.store.path, read_only=True) as store:
        checkpoints = dict(store.con.execute("SELECT rm_run_id, checkpoint_dir FROM rm_runs").fetchall())
    assert set(checkpoints) == {round_one["incumbent_rm_run_id"], round_one["candidate_rm_run_id"]}
    assert all(value.startswith("s3://prefcurate-test/refresh/rm/") for value in checkpoints.values())
    trained = [run for run in flow_runs(api, work_pool_name="gpu") if "/refresh/" in run.parameters["output"]]
    assert len(trained) == 2 and all(run.state.is_completed() for run in trained)
    warm = {run.parameters["base_model"] for run in trained}  # round 1 started from the first model
    assert len(warm) == 2 and all(value.startswith("s3://prefcurate-test/refresh/models/") for value in warm)
