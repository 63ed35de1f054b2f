"""Running untrusted code (a response's program, or a checker over a response) in a subprocess with
no network, bounded time, memory, file size and core dumps.

The network is cut with a new user and network namespace (`unshare -rn`: the child sees only a
loopback interface that is down). Where namespaces are not available, code is refused
(SandboxUnavailable) rather than run with the network. Time is bounded twice: RLIMIT_CPU, and a
wall-clock timeout that kills the child's whole process group. The filesystem is not isolated
beyond a fresh working directory and RLIMIT_FSIZE: run prefcurate itself in a container when the
code comes from an untrusted policy at scale.
"""

from __future__ import annotations

import functools
import math
import os
import resource
import shutil
import signal
import subprocess
import tempfile
from dataclasses import dataclass

OUTPUT_CHARS = 2000  # of stdout / stderr kept in a result


class SandboxUnavailable(RuntimeError):
    """This machine cannot cut a child's network (no user/network namespaces)."""


@dataclass(frozen=True)
class Limits:
    time_s: float = 10.0
    memory_mb: int = 1024
    file_mb: int = 16


@dataclass(frozen=True)
class SandboxResult:
    status: str  # ok | failed (non-zero exit) | timeout | memory | crashed (killed by a signal)
    returncode: int | None
    stdout: str
    stderr: str
    seconds: float

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def describe(self) -> str:
        """One line for reports: why it did not pass."""
        if self.status == "ok":
            return "passed"
        tail = (self.stderr.strip().splitlines() or [""])[-1][:200]
        return {"timeout": f"timed out after {self.seconds:.1f} s",
                "memory": "ran out of memory (limit reached)",
                "crashed": f"killed by signal {-(self.returncode or 0)}"}.get(self.status, f"exit {self.returncode}: {tail}")


@functools.cache
def no_network_prefix() -> tuple[str, ...]:
    """The command prefix that starts a child with no network, or SandboxUnavailable."""
    unshare = shutil.which("unshare")
    if unshare:
        probe = subprocess.run([unshare, "-rn", "true"], capture_output=True, timeout=10)
        if probe.returncode == 0:
            return (unshare, "-rn")
        reason = probe.stderr.decode(errors="replace").strip() or f"exit {probe.returncode}"
    else:
        reason = "unshare (util-linux) is not installed"
    raise SandboxUnavailable(f"cannot cut a child process's network with `unshare -rn` ({reason}): code is not run "
                             "without that; enable unprivileged user namespaces, or run prefcurate in a container "
                             "that allows them")


def run_sandboxed(argv: list[str], stdin: str, limits: Limits, network: bool = False) -> SandboxResult:
    """Run argv with `stdin`; never raises for what the child does (only SandboxUnavailable)."""
    import time

    prefix = () if network else no_network_prefix()
    memory = limits.memory_mb * 1024 * 1024

    def restrict() -> None:  # in the child, before exec
        os.setsid()
        resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
        cpu = math.ceil(limits.time_s) + 1
        resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
        size = limits.file_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_FSIZE, (size, size))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))

    with tempfile.TemporaryDirectory(prefix="prefcurate-sandbox-") as home:
        env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": home, "LANG": "C.UTF-8", "TMPDIR": home,
               "PYTHONDONTWRITEBYTECODE": "1", "PYTHONHASHSEED": "0"}
        started = time.monotonic()
        child = subprocess.Popen([*prefix, *argv], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, cwd=home, env=env, preexec_fn=restrict)
        timed_out = False
        try:
            out, err = child.communicate(stdin.encode(), timeout=limits.time_s)
        except subprocess.TimeoutExpired:
            timed_out = True
            os.killpg(child.pid, signal.SIGKILL)
            out, err = child.communicate()
        seconds = time.monotonic() - started
    stdout, stderr = out.decode(errors="replace"), err.decode(errors="replace")
    code = child.returncode
    if timed_out or (code in (-signal.SIGXCPU, -signal.SIGKILL) and seconds >= limits.time_s * 0.9):
        status = "timeout"
    elif "MemoryError" in stderr or "Cannot allocate memory" in stderr or "std::bad_alloc" in stderr:
        status = "memory"
    elif code == 0:
        status = "ok"
    elif code < 0:
        status = "crashed"
    else:
        status = "failed"
    return SandboxResult(status, code, stdout[-OUTPUT_CHARS:], stderr[-OUTPUT_CHARS:], seconds)
