"""The temporary Prefect API server a CLI command runs its flows against, owned by that command.

Without PREFECT_API_URL, Prefect would start its own temporary server as a child in the command's
process group: Ctrl-C in a terminal then kills the server along with the command (which hangs
retrying its crash report against the dead server), and kill -9 leaves it running as an orphan
(~190 MB). This one is started in a session of its own (the terminal's Ctrl-C reaches only the
command, which stops it after reporting) and watches its parent: when the command dies by any
signal, the server exits within a second.

`python -m prefcurate.flows.temporary_server PARENT_PID PORT` is the server side.
"""

from __future__ import annotations

import atexit
import ctypes
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import httpx

_STARTUP_TIMEOUT_S = 90.0
_STOP_TIMEOUT_S = 5.0
_OURS: set[str] = set()  # the API URLs of temporary servers this process runs


def is_temporary(api_url: str | None) -> bool:
    """Whether the URL is one of this process's temporary servers: no worker ever polls those."""
    return api_url in _OURS


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _die_with_parent() -> None:
    """Linux: the kernel sends SIGTERM when the parent dies (the watchdog thread covers the rest)."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


class TemporaryServer:
    """`log`: where the server's own output goes (never the terminal: stopping it while requests are
    in flight makes uvicorn print their cancelled tracebacks, which a user would take for a failure)."""

    def __init__(self, log: Path | None = None) -> None:
        self.log = log
        for _attempt in range(3):  # another process may take the free port before the server binds it
            self.port = _free_port()
            self.api_url = f"http://127.0.0.1:{self.port}/api"
            self.process = self._start()
            if self._healthy():
                atexit.register(self.stop)
                return
        self.stop()
        raise RuntimeError(f"the temporary Prefect server did not start (last exit code {self.process.returncode}"
                           + (f"; its output is in {self.log})" if self.log else ")"))

    def _start(self) -> subprocess.Popen:
        # Prefect's own recipe for a temporary server: no UI, ephemeral-mode services.
        env = {**os.environ, "PREFECT_UI_ENABLED": "0", "PREFECT__SERVER_EPHEMERAL": "1",
               "PREFECT__SERVER_FINAL": "1"}
        env.pop("PREFECT_API_URL", None)
        output = subprocess.DEVNULL
        if self.log is not None:
            self.log.parent.mkdir(parents=True, exist_ok=True)
            output = open(self.log, "ab")  # noqa: SIM115 (the child holds it; ours closes below)
        try:
            return subprocess.Popen(
                [sys.executable, "-m", "prefcurate.flows.temporary_server", str(os.getpid()), str(self.port)],
                env=env, start_new_session=True, preexec_fn=_die_with_parent if sys.platform == "linux" else None,
                stdin=subprocess.DEVNULL, stdout=output, stderr=output)
        finally:
            if output is not subprocess.DEVNULL:
                output.close()

    def _healthy(self) -> bool:
        """True once it answers; False if it exited (e.g. the port was taken)."""
        deadline = time.monotonic() + _STARTUP_TIMEOUT_S
        with httpx.Client(timeout=2.0) as client:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    return False
                try:
                    if client.get(f"{self.api_url}/health").status_code == 200:
                        return True
                except httpx.TransportError:
                    pass
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"the temporary Prefect server did not answer within {_STARTUP_TIMEOUT_S:.0f} s")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=_STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@contextmanager
def prefect_api(server_log: Path | None = None) -> Iterator[str | None]:
    """Run the body against PREFECT_API_URL when set, else against a temporary server of our own
    whose output goes to server_log (else nowhere)."""
    if os.environ.get("PREFECT_API_URL"):
        yield os.environ["PREFECT_API_URL"]
        return
    from prefect.settings import PREFECT_API_URL, temporary_settings

    server = TemporaryServer(server_log)
    _OURS.add(server.api_url)
    try:
        with temporary_settings(updates={PREFECT_API_URL: server.api_url}):
            try:
                yield server.api_url
            finally:
                _send_pending_logs()  # while the server still listens
    finally:
        _OURS.discard(server.api_url)
        server.stop()


def _send_pending_logs() -> None:
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogHandler

    for drain in (lambda: APILogHandler().flush(), lambda: EventsWorker.drain_all(timeout=5)):
        try:
            drain()
        except Exception:  # noqa: BLE001 (best effort: the run itself is over)
            pass


# -- the server side ---------------------------------------------------------------------------

def _watch_parent(parent_pid: int) -> None:
    while os.getppid() == parent_pid:
        time.sleep(0.5)
    os.kill(os.getpid(), signal.SIGTERM)  # uvicorn shuts down cleanly on SIGTERM
    time.sleep(_STOP_TIMEOUT_S)
    os._exit(1)


def _serve(parent_pid: int, port: int) -> None:
    import uvicorn

    threading.Thread(target=_watch_parent, args=(parent_pid,), daemon=True, name="parent-watch").start()
    uvicorn.run("prefect.server.api.server:create_app", factory=True, host="127.0.0.1", port=port,
                log_level="error", lifespan="on")


if __name__ == "__main__":
    _serve(int(sys.argv[1]), int(sys.argv[2]))
