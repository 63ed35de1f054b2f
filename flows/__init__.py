"""Thin Prefect flows over prefcurate.pipeline. Importing this package configures Prefect."""

import os

# Before prefect is imported: no telemetry, and our own loggers shown in flow-run logs.
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_EXTRA_LOGGERS", "prefcurate")
