"""Scheduled deployments: `prefcurate serve` serves one deployment per entry of serve.schedules
(cron, timezone) against a real Prefect server, and runs their flow runs as they come due or as
they are triggered from the UI, the CLI or the API.

Schedules only fire on a real server (`prefect server start`): an ephemeral one never does, so
serve refuses to start without PREFECT_API_URL.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from prefect import serve
from prefect.schedules import Cron

from prefcurate.core.config import PrefcurateConfig
from prefcurate.flows.refresh import refresh_flow
from prefcurate.flows.stages import collect_annotations_flow, curate_flow, judge_flow, pipeline_flow, train_flow
from prefcurate.flows.training import TRAIN_JOB, deploy_training

FLOWS = {
    "judge": judge_flow,
    "collect-annotations": collect_annotations_flow,
    "refresh": refresh_flow,
    "curate": curate_flow,
    "train": train_flow,
    "pipeline": pipeline_flow,
}


class ServeError(RuntimeError):
    """Deployments cannot be served (no Prefect server configured, ...)."""


def _active(schedule, config: PrefcurateConfig) -> bool:
    # Collecting annotations needs Argilla: without argilla.enabled the schedule is kept but paused.
    return schedule.enabled and (schedule.flow != "collect-annotations" or config.argilla.enabled)


def deployment_parameters(config: PrefcurateConfig) -> dict:
    """The config as the deployments' default parameters (a run from the UI can override any field):
    paths made absolute, since a worker runs flows from another directory, and the annotation
    server's own connection strings left out, since they may carry passwords and flows never need
    them (secrets otherwise live in the environment: the config only names the variables)."""
    data = config.model_dump(mode="json")
    for section, key in (("store", "path"), (None, "workdir"), (None, "models_dir")):
        holder = data[section] if section else data
        if holder.get(key):
            holder[key] = str(Path(holder[key]).expanduser().resolve())
    server = data["argilla"]["server"]
    if server.get("home"):
        server["home"] = str(Path(server["home"]).expanduser().resolve())
    elif not data["argilla"].get("url"):
        server["home"] = str((Path(data["workdir"]) / "argilla").resolve())
    for secret_bearing in ("database_url", "elasticsearch_url"):
        server[secret_bearing] = None
    if str(server.get("redis", "")).startswith("redis"):
        server["redis"] = "auto"
    return {"config": data}


def build_deployments(config: PrefcurateConfig) -> list:
    parameters = deployment_parameters(config)
    return [
        FLOWS[schedule.flow].to_deployment(
            name=name,
            schedules=[Cron(schedule.cron, timezone=config.serve.timezone, active=_active(schedule, config))],
            parameters=parameters,
            tags=["prefcurate", schedule.flow],
            concurrency_limit=1,  # a due run and a manual one of the same deployment never overlap
            description=f"prefcurate {schedule.flow}, cron {schedule.cron!r} ({config.serve.timezone})",
        )
        for name, schedule in config.serve.schedules.items()
    ]


def deploy_to_work_pool(config: PrefcurateConfig, work_pool: str | None) -> dict[str, str]:
    """Register the scheduled deployments on a work pool instead of serving them here (a worker of
    that pool, process here, Kubernetes or Docker in production, runs their flow runs), and the
    training deployment on train.work_pool when that is set. The flows' code is read from where
    prefcurate is installed on the worker's machine. Returns {deployment: work pool}."""
    if not os.environ.get("PREFECT_API_URL"):
        raise ServeError("deploying to a work pool needs a Prefect server: export PREFECT_API_URL")
    if work_pool is None and not config.train.work_pool:
        raise ServeError("nothing to deploy: give --work-pool for serve.schedules, or set train.work_pool")
    deployed = {}
    if config.train.work_pool:
        deploy_training(config)
        deployed[f"{TRAIN_JOB}/{config.train.work_pool}"] = config.train.work_pool
    if work_pool is None:
        return deployed
    source = str(Path(__file__).resolve().parent)
    parameters = deployment_parameters(config)
    for name, schedule in config.serve.schedules.items():
        flow = FLOWS[schedule.flow]
        module = Path(sys.modules[flow.fn.__module__].__file__).name
        loaded = flow.from_source(source=source, entrypoint=f"{module}:{flow.fn.__name__}")
        loaded.deploy(
            name=name, work_pool_name=work_pool, parameters=parameters, tags=["prefcurate", schedule.flow],
            concurrency_limit=1,
            schedules=[Cron(schedule.cron, timezone=config.serve.timezone, active=_active(schedule, config))],
            print_next_steps=False,
        )
        deployed[f"{flow.name}/{name}"] = work_pool
    return deployed


def serve_deployments(config: PrefcurateConfig, limit: int | None = None) -> None:
    """Register the deployments and run their flow runs until interrupted."""
    if not os.environ.get("PREFECT_API_URL"):
        raise ServeError(
            "prefcurate serve needs a Prefect server: start one with `prefect server start --host 127.0.0.1` "
            "and export PREFECT_API_URL=http://127.0.0.1:4200/api (an ephemeral server never fires schedules)"
        )
    if not config.serve.schedules:
        raise ServeError("serve.schedules is empty: nothing to serve")
    if config.train.work_pool:  # training runs on its own pool, from a deployment there
        deploy_training(config)
    # pause_on_shutdown=False: a restarted serve process finds its schedules still active.
    serve(*build_deployments(config), limit=limit, pause_on_shutdown=False)
