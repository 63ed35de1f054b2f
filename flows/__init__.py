"""Thin Prefect flows over prefcurate.pipeline and prefcurate.refresh, and their deployments: the
only package that imports Prefect. Importing it configures Prefect."""

import os

# Before prefect is imported: no telemetry, and our own loggers shown in flow-run logs.
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_EXTRA_LOGGERS", "prefcurate")
