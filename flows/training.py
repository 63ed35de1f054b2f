"""Training on a work pool (train.work_pool): the `train-job` flow that a worker of that pool runs
(the portable job, rm/train_job.py: locations in, a checkpoint out, no store), its deployment, and the
parent's side, which starts it, waits for it and cancels it when interrupted.

The deployment is `train-job/<pool>`, registered by `prefcurate deploy` (and `prefcurate serve`) on
the pool itself, so one Prefect server can hold a CPU pool for the pipeline and a GPU pool for
training. A flow run is keyed by the run id: a parent killed while its child trains, then run
again, waits for that same child instead of starting a second training.
"""

from __future__ import annotations

import logging
import sys
import time
import uuid
from pathlib import Path

from prefcurate.core.config import EvaluateConfig, PrefcurateConfig, TrainConfig
from prefcurate.core.stage_report import StageFailed
from prefcurate.flows.stage_flow import stage_flow
from prefcurate.flows.temporary_server import is_temporary

log = logging.getLogger("prefcurate")
TRAIN_JOB = "train-job"
POLL_S = 2.0
HEARTBEAT_S = 60.0


class PlacementError(StageFailed):
    """Training cannot be placed on the work pool (no Prefect server, no deployment, no worker)."""


@stage_flow(TRAIN_JOB)
def train_job_flow(export: str, base_model: str, output: str, train: dict, evaluate: dict | None = None) -> dict:
    """The portable training job, as a worker of the GPU pool runs it: no store, no local paths."""
    from prefcurate.core.local_models import pick_device
    from prefcurate.rm.train_job import run_training_job

    config = TrainConfig.model_validate(train)
    result = run_training_job(export, base_model, output, config, pick_device(config.device),
                              EvaluateConfig.model_validate(evaluate) if evaluate is not None else None)
    evaluation = (result or {}).get("eval_metrics") or {}
    return {"rm_run_id": (result or {}).get("rm_run_id"), "output": output, "reused": (result or {}).get("reused"),
            "accuracy": evaluation.get("accuracy")}


def deploy_training(config: PrefcurateConfig) -> str:
    """Register train-job/<pool> on train.work_pool (the flow's code is read from where prefcurate
    is installed on the worker's machine). Returns the deployment id."""
    pool = config.train.work_pool
    module = Path(sys.modules[train_job_flow.fn.__module__].__file__)
    loaded = train_job_flow.from_source(source=str(module.parent), entrypoint=f"{module.name}:{train_job_flow.fn.__name__}")
    return str(loaded.deploy(name=pool, work_pool_name=pool, job_variables=config.train.job_variables,
                             tags=["prefcurate", TRAIN_JOB], print_next_steps=False,
                             description="prefcurate's portable training job: a curated export in, a reward model out"))


def check_work_pool(config: PrefcurateConfig) -> None:
    """Fail before any work when training is to be placed but cannot be (no Prefect server)."""
    if config.train.work_pool:
        _api_url()


def _api_url() -> str:
    from prefect.settings import PREFECT_API_URL

    api = PREFECT_API_URL.value()
    if not api or is_temporary(api):
        raise PlacementError(
            "train.work_pool needs a Prefect server that the pool's workers poll: start one (`prefect server start "
            "--host 127.0.0.1`), export PREFECT_API_URL=http://127.0.0.1:4200/api, register the training deployment "
            "with `prefcurate deploy` and start a worker on the pool; or unset train.work_pool to train here")
    return api


def run_on_work_pool(handoff, config: PrefcurateConfig) -> dict:
    """Run the training job as train-job/<pool> and wait for it to finish (pipeline.train_stage's
    `place`). Ctrl-C, SIGTERM or any error while waiting cancels the child run."""
    from prefcurate.rm.train_job import read_result

    pool = config.train.work_pool
    finished = read_result(handoff.output)
    if finished is not None and finished.get("rm_run_id") == handoff.rm_run_id:
        log.info("train: %s already holds run %s: nothing to place on %s", handoff.output, handoff.rm_run_id[:16], pool)
        return {"work_pool": pool, "flow_run": None, "reused": True}
    api = _api_url()
    parameters = {"export": handoff.export, "base_model": handoff.base_model, "output": handoff.output,
                  "train": config.train.recipe(), "evaluate": config.evaluate.model_dump(mode="json")}
    flow_run = _start(f"{TRAIN_JOB}/{pool}", parameters, config, handoff.rm_run_id, api)
    log.info("train: flow run %s (%s) on work pool %s", flow_run.name, flow_run.id, pool)
    try:
        state = _wait(flow_run.id, pool, config.train.wait_for_worker_s)
    except BaseException:  # Ctrl-C, SIGTERM (console.Terminated), a lost server: the child must not run on
        _cancel(flow_run.id)
        raise
    if not state.is_completed():
        raise StageFailed(f"training on work pool {pool} ended {state.name}: {state.message or 'no message'} "
                          f"(flow run {flow_run.name}, {flow_run.id}: its logs are in the Prefect UI)")
    return {"work_pool": pool, "flow_run": str(flow_run.id), "reused": False}


def _start(deployment: str, parameters: dict, config: PrefcurateConfig, run_id: str, api: str):
    """A flow run of the deployment, or the unfinished one a previous attempt started for this run id."""
    from prefect.deployments import run_deployment
    from prefect.exceptions import ObjectNotFound

    def start(key: str):
        try:
            return run_deployment(deployment, parameters=parameters, job_variables=config.train.job_variables,
                                  timeout=0, idempotency_key=key, tags=["prefcurate", TRAIN_JOB])
        except ObjectNotFound:
            raise PlacementError(f"no deployment {deployment} on the Prefect server at {api}: register it with "
                                 "`prefcurate deploy` (it deploys train-job on train.work_pool)") from None

    key = f"train-{run_id[:16]}"
    flow_run = start(key)
    if flow_run.state.is_final() or flow_run.state.is_cancelling():
        # The key's run has ended or is being cancelled (a Ctrl-C'd parent), or completed with its
        # output since removed: a new run.
        flow_run = start(f"{key}-{uuid.uuid4().hex[:8]}")
    return flow_run


def _wait(flow_run_id, pool: str, wait_for_worker_s: int):
    """Poll the run until it ends, saying when its state changes and, while it runs, every minute."""
    from prefect.client.orchestration import get_client

    started = last_said = time.monotonic()
    said = None
    with get_client(sync_client=True) as client:
        while True:
            state = client.read_flow_run(flow_run_id).state
            if state.is_final():
                return state
            now = time.monotonic()
            if state.name != said or now - last_said >= HEARTBEAT_S:
                log.info("train: the training run is %s on work pool %s (%.0f min)", state.name, pool,
                         (now - started) / 60)
                said, last_said = state.name, now
            if state.is_scheduled() and now - started > wait_for_worker_s:  # Pending: a worker has it (pulling an image, ...)
                raise PlacementError(f"no worker of work pool {pool} started the training run in {wait_for_worker_s} s "
                                     f"(train.wait_for_worker_s): start one with `prefect worker start --pool {pool}`")
            time.sleep(POLL_S)


def _cancel(flow_run_id) -> None:
    from prefect.client.orchestration import get_client
    from prefect.states import Cancelled, Cancelling

    try:
        with get_client(sync_client=True) as client:
            state = client.read_flow_run(flow_run_id).state
            if state.is_final():
                return
            # A run no worker has started yet has nothing to stop: it is cancelled outright.
            client.set_flow_run_state(flow_run_id, Cancelling() if state.is_running() or state.is_pending()
                                      else Cancelled(), force=True)
        log.warning("train: cancelled the training run %s on the work pool", flow_run_id)
    except Exception as error:  # noqa: BLE001 (the interruption that brought us here matters more)
        log.warning("train: could not cancel the training run %s: %s", flow_run_id, error)
