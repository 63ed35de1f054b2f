"""A round's uncertain pairs to human annotators, when argilla.enabled: earlier answers collected,
this round's pairs pushed. Any Argilla failure is reported and skipped, never waited on."""

from __future__ import annotations

import logging

from prefcurate import pipeline
from prefcurate.core.config import PrefcurateConfig

log = logging.getLogger("prefcurate")


def route_to_annotators(config: PrefcurateConfig, round_index: int) -> dict:
    outcome = {}
    for name, step in (("collected", lambda: pipeline.annotate_pull_stage(config)),
                       ("pushed", lambda: pipeline.annotate_push_stage(config, round_index))):
        try:
            outcome[name] = step()["count_out"]
        except Exception as error:  # noqa: BLE001  (down, refusing, timing out, 5xx: the round goes on)
            log.warning("refresh round %d: argilla %s skipped: %s", round_index, name, error)
            outcome[name] = f"skipped: {error}"
    return outcome
