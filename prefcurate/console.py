"""What a command shows in the terminal, and what goes to the log file instead.

The terminal gets progress, stage counts and, on failure, one line: `error: <what, where> [log: FILE]`.
Tracebacks (ours and Prefect's report of a failed flow) go to `<workdir>/logs/prefcurate.log`, and
to the terminal too only with `--debug`. Every configured secret is masked in both.

Exit codes: 0 done (also "nothing to do": everything was cached), 1 a stage failed or produced
nothing it was asked for, 2 a bad command line or config, 130 interrupted (Ctrl-C), 143 terminated
(SIGTERM). What was answered before an interruption is stored; the same command resumes.
"""

from __future__ import annotations

import logging
import signal
from pathlib import Path

from prefcurate.core.secrets import RedactingFilter, redact, redact_logging

LOG_NAME = "prefcurate.log"
EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED, EXIT_TERMINATED = 1, 2, 130, 143
_NOISY = ("httpx", "httpcore", "openai", "urllib3", "filelock", "datasets", "fsspec")
# Prefect reports a failed flow or task at ERROR with its traceback; the command prints its own line.
_RUN_LOGGERS = ("prefect.flow_runs", "prefect.task_runs", "prefect.flow_engine", "prefect.task_engine")


class _Session:
    debug = False
    workdir = Path("prefcurate_out")
    file_handler: logging.FileHandler | None = None
    temporary_api = False  # flows run against the command's own temporary Prefect server


session = _Session()


def log_path() -> Path:
    return session.workdir / "logs" / LOG_NAME


class Terminated(BaseException):
    """SIGTERM, raised where the process is so that `finally` blocks flush what was answered."""


def _raise_terminated(signum, frame) -> None:
    raise Terminated()


def handle_sigterm() -> None:
    signal.signal(signal.SIGTERM, _raise_terminated)


class _QuietRunFailures(logging.Filter):
    """Terminal only: the command says what failed in one line; Prefect's own report of the failure
    (with the traceback, and its "Finished in state Failed(...)") goes to the log file. Links to the
    runs are dropped when the server is the command's temporary one (it serves no UI)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if session.debug or not record.name.startswith(_RUN_LOGGERS):
            return True
        if record.levelno >= logging.ERROR:
            return False
        message = record.getMessage()
        if message.startswith(("Finished in state Failed", "Finished in state Crashed")):
            return False
        return not (session.temporary_api and message.startswith("View at http"))


class _WithoutTraceback(logging.Formatter):
    """Wraps a terminal handler's formatter: the message without the traceback (kept in the log file)."""

    def __init__(self, inner: logging.Formatter | None):
        super().__init__()
        self.inner = inner or logging.Formatter()

    def format(self, record: logging.LogRecord) -> str:
        saved = record.exc_info, record.exc_text, record.stack_info
        record.exc_info = record.exc_text = record.stack_info = None
        try:
            return self.inner.format(record)
        finally:
            record.exc_info, record.exc_text, record.stack_info = saved


def _file_handler() -> logging.FileHandler:
    if session.file_handler is None or Path(session.file_handler.baseFilename) != log_path().resolve():
        path = log_path()
        path.parent.mkdir(parents=True, exist_ok=True)
        handler = logging.FileHandler(path, encoding="utf-8", delay=True)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        handler.addFilter(RedactingFilter())
        if session.file_handler is not None:
            logging.getLogger().removeHandler(session.file_handler)
        logging.getLogger().addHandler(handler)
        session.file_handler = handler
    return session.file_handler


def setup_logging() -> None:
    """Call after Prefect is imported (its logging config resets the root logger), and again when the
    workdir is known."""
    root = logging.getLogger()
    if not root.handlers:
        logging.basicConfig(format="%(asctime)s %(levelname)s %(message)s")
    logging.getLogger("prefcurate").setLevel(logging.INFO)  # stage counts and progress lines
    for noisy in _NOISY:
        logging.getLogger(noisy).setLevel(logging.WARNING)
    file_handler = _file_handler()
    for handler in root.handlers:
        if handler is file_handler or any(isinstance(f, _QuietRunFailures) for f in handler.filters):
            continue
        handler.addFilter(_QuietRunFailures())
        if not session.debug:
            handler.setFormatter(_WithoutTraceback(handler.formatter))
    redact_logging()


def is_interrupted_query(error: BaseException) -> bool:
    """Ctrl-C that landed while DuckDB ran a statement (a commit's checkpoint, say): DuckDB takes the
    signal itself and raises its own error, "Query interrupted" (a RuntimeError from its Python
    binding, or InterruptException), where Python would have raised KeyboardInterrupt."""
    from_duckdb = type(error).__module__.lstrip("_").startswith("duckdb")
    return (from_duckdb and type(error).__name__ == "InterruptException") or \
        (type(error) is RuntimeError and str(error) == "Query interrupted")


def failure_line(error: BaseException, known: bool) -> str:
    """The one line a failure shows (the message's first line: DuckDB's run on with advice); the
    whole message and the traceback go to the log file it names."""
    message = redact(str(error)) or type(error).__name__
    record = logging.LogRecord("prefcurate.cli", logging.ERROR, __file__, 0, "command failed: %s", (message,),
                               (type(error), error, error.__traceback__))
    _file_handler().handle(record)  # the file only: the terminal gets the line below
    message = message.strip().splitlines()[0] if message.strip() else type(error).__name__
    if type(error).__name__ == "OutOfMemoryException" and type(error).__module__.lstrip("_").startswith("duckdb"):
        message += ("; DuckDB reached its memory limit: raise store.memory_limit (default 2GB) in the config and "
                    "run the same command again (what was committed is kept and the run goes on from there)")
    if not known:
        message = f"unexpected {type(error).__name__}: {message}"
    return f"error: {message} [log: {log_path()}]"
