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

from prefcurate.config import PrefcurateConfig
from prefcurate.flows.refresh import refresh_flow
from prefcurate.flows.stages import collect_annotations_flow, curate_flow, judge_flow, pipeline_flow

FLOWS = {
    "judge": judge_flow,
    "collect-annotations": collect_annotations_flow,
    "refresh": refresh_flow,
    "curate": curate_flow,
    "pipeline": pipeline_flow,
}


class ServeError(RuntimeError):
    """Deployments cannot be served (no Prefect server configured, ...)."""


def build_deployments(config: PrefcurateConfig) -> list:
    # The whole config travels as the deployment's default parameters (it holds no secrets: only
    # the names of the environment variables that do); a run from the UI can override any field.
    parameters = {"config": config.model_dump(mode="json")}
    return [
        FLOWS[schedule.flow].to_deployment(
            name=name,
            schedules=[Cron(schedule.cron, timezone=config.serve.timezone, active=schedule.enabled)],
            parameters=parameters,
            tags=["prefcurate", schedule.flow],
            description=f"prefcurate {schedule.flow}, cron {schedule.cron!r} ({config.serve.timezone})",
        )
        for name, schedule in config.serve.schedules.items()
    ]


def deploy_to_work_pool(config: PrefcurateConfig, work_pool: str) -> list[str]:
    """Register the same scheduled deployments on a work pool instead of serving them here: a
    worker of that pool (process here; Kubernetes or Docker in production) runs the flow runs.
    The flows' code is read from where prefcurate is installed on the worker's machine."""
    if not os.environ.get("PREFECT_API_URL"):
        raise ServeError("deploying to a work pool needs a Prefect server: export PREFECT_API_URL")
    source = str(Path(__file__).resolve().parent)
    parameters = {"config": config.model_dump(mode="json")}
    ids = []
    for name, schedule in config.serve.schedules.items():
        flow = FLOWS[schedule.flow]
        module = Path(sys.modules[flow.fn.__module__].__file__).name
        loaded = flow.from_source(source=source, entrypoint=f"{module}:{flow.fn.__name__}")
        ids.append(str(loaded.deploy(
            name=name, work_pool_name=work_pool, parameters=parameters, tags=["prefcurate", schedule.flow],
            schedules=[Cron(schedule.cron, timezone=config.serve.timezone, active=schedule.enabled)],
            print_next_steps=False,
        )))
    return ids


def serve_deployments(config: PrefcurateConfig, limit: int | None = None) -> None:
    """Register the deployments and run their flow runs until interrupted."""
    if not os.environ.get("PREFECT_API_URL"):
        raise ServeError(
            "prefcurate serve needs a Prefect server: start one with `prefect server start --host 127.0.0.1` "
            "and export PREFECT_API_URL=http://127.0.0.1:4200/api (an ephemeral server never fires schedules)"
        )
    if not config.serve.schedules:
        raise ServeError("serve.schedules is empty: nothing to serve")
    # pause_on_shutdown=False: a restarted serve process finds its schedules still active.
    serve(*build_deployments(config), limit=limit, pause_on_shutdown=False)
