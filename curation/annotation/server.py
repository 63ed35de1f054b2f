"""Run argilla-server for annotators: its own venv, its secrets, its process (and Redis).

`prefcurate argilla start` calls `start_server`: it creates (or reuses) a virtual environment with
argilla-server 2.8.0 and the pins it needs, starts `argilla_service/launcher.py` there (migrate,
bootstrap the owner, serve), waits until the API answers, and records the process ids in the
server's home so `stop` and `status` find them. Starting a running server is a no-op.

Secrets: the owner's API key and password come from the environment variables the config names;
when unset, they are generated once and kept in the server home with mode 0600 (as is the secret
that signs UI sessions, so sign-ins survive restarts). They are never printed or logged.
"""

from __future__ import annotations

import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from prefcurate.core.config import ArgillaConfig
from prefcurate.core.secrets import register_secret, secret_from_env

log = logging.getLogger("prefcurate.argilla")

SERVER_REQUIREMENTS = (
    "argilla-server==2.8.0",
    # argilla-server's CLI (typer 0.9) breaks on click >= 8.2; it imports datasets/hub APIs of <4/<1.
    "click<8.2",
    "huggingface-hub<1",
    "datasets<4",
    "fakeredis>=2.20",  # the in-process Redis stand-in (redis = fakeredis or auto without redis-server)
)
SERVICE_ENV = {"PATH", "HOME", "LANG", "TMPDIR", "TZ", "USER", "SSL_CERT_FILE", "REQUESTS_CA_BUNDLE"}
LAUNCHER = Path(__file__).parent / "argilla_service" / "launcher.py"
DEFAULT_VENV = Path.home() / ".cache" / "prefcurate" / "argilla-server-2.8.0"


class AnnotationServerError(RuntimeError):
    """The annotation server could not be installed, started or reached."""


@dataclass(frozen=True)
class ServerPaths:
    home: Path

    @property
    def pid(self) -> Path:
        return self.home / "server.pid"

    @property
    def redis_pid(self) -> Path:
        return self.home / "redis.pid"

    @property
    def redis_choice(self) -> Path:
        return self.home / "redis.choice"

    @property
    def log(self) -> Path:
        return self.home / "server.log"

    @property
    def redis_log(self) -> Path:
        return self.home / "redis.log"

    def secret(self, name: str) -> Path:
        return self.home / "secrets" / name


# -- the server's virtual environment ---------------------------------------------------------------

def server_venv(config: ArgillaConfig) -> Path:
    return (config.server.venv or DEFAULT_VENV).expanduser()


def ensure_server_venv(venv: Path) -> Path:
    """Create the venv and install argilla-server with its pins, unless already done; return its python."""
    python = venv / "bin" / "python"
    stamp = venv / ".prefcurate-requirements"
    wanted = "\n".join(SERVER_REQUIREMENTS)
    if python.exists() and stamp.exists() and stamp.read_text() == wanted:
        return python
    log.info("installing argilla-server into %s (once; ~1 min)", venv)
    try:
        if not python.exists():
            subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, capture_output=True, text=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", *SERVER_REQUIREMENTS],
                       check=True, capture_output=True, text=True)
    except subprocess.CalledProcessError as error:
        raise AnnotationServerError(
            f"could not install argilla-server into {venv}: {error.stderr.strip()[-2000:]}"
        ) from None
    stamp.write_text(wanted)
    return python


# -- secrets ------------------------------------------------------------------------------------

def _kept_secret(paths: ServerPaths, name: str, env_var: str | None, length: int = 32) -> str:
    """The value of env_var when set; else a value generated once and kept (0600) in the home."""
    if env_var and os.environ.get(env_var):
        return secret_from_env(env_var)
    path = paths.secret(name)
    if path.exists():
        return register_secret(path.read_text().strip())
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    value = secrets.token_urlsafe(length)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(value)
    return register_secret(value)


def owner_api_key(config: ArgillaConfig, home: Path) -> str:
    """The owner's API key: from the environment, or the one the local server was started with."""
    env_var = config.owner.api_key_env
    if env_var and os.environ.get(env_var):
        return secret_from_env(env_var)
    path = ServerPaths(home).secret("owner_api_key")
    if path.exists():
        return register_secret(path.read_text().strip())
    raise AnnotationServerError(
        f"no Argilla API key: set {env_var or 'argilla.owner.api_key_env'} or start the server with "
        f"`prefcurate argilla start` (which keeps one in {path.parent})"
    )


# -- processes ----------------------------------------------------------------------------------

def _alive(pid_file: Path) -> int | None:
    """The pid recorded in pid_file if that process still runs and is ours (a launcher or a
    redis-server: after a reboot the number may belong to something else)."""
    if not pid_file.exists():
        return None
    try:
        pid = int(pid_file.read_text().strip())
        os.kill(pid, 0)
    except (ValueError, ProcessLookupError, PermissionError):
        return None
    cmdline = Path(f"/proc/{pid}/cmdline")
    if cmdline.exists() and not any(name in cmdline.read_bytes() for name in (b"launcher.py", b"redis-server")):
        return None
    try:  # our own child that exited is a zombie until reaped: reap it, and it is gone
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return None
    except ChildProcessError:  # started by another process (e.g. an earlier `argilla start`)
        pass
    return pid


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _start_redis(paths: ServerPaths) -> str:
    port = _free_port()
    with open(paths.redis_log, "ab") as out:
        process = subprocess.Popen(
            ["redis-server", "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no"],
            stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )
    paths.redis_pid.write_text(str(process.pid))
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return f"redis://127.0.0.1:{port}/0"
        time.sleep(0.1)
    raise AnnotationServerError(f"redis-server did not listen on 127.0.0.1:{port}; see {paths.redis_log}")


def _choose_redis(config: ArgillaConfig, paths: ServerPaths) -> tuple[str, str | None]:
    """(launcher mode, redis URL) for the configured choice; the choice is logged."""
    choice = config.server.redis
    if choice == "auto":
        choice = "redis-server" if shutil.which("redis-server") else "fakeredis"
        log.info("redis: auto chose %s%s", choice, "" if choice == "redis-server" else " (no redis-server on PATH)")
    if choice == "fakeredis":
        log.info("redis: in-process stand-in (fakeredis); argilla background jobs will not run")
        return "fakeredis", None
    if choice == "redis-server":
        if not shutil.which("redis-server"):
            raise AnnotationServerError("argilla.server.redis = redis-server, but no redis-server is on PATH")
        url = _start_redis(paths)
        log.info("redis: redis-server at %s", url)
        return "url", url
    log.info("redis: %s", choice.split("@")[-1])  # a URL may carry a password before '@'
    return "url", choice


def health(config: ArgillaConfig, api_key: str) -> dict | None:
    try:
        response = httpx.get(f"{config.resolved_url}/api/v1/status", headers={"X-Argilla-Api-Key": api_key}, timeout=5)
    except httpx.HTTPError:
        return None
    return response.json() if response.status_code == 200 else None


def start_server(config: ArgillaConfig, home: Path) -> dict:
    """Start the server (a no-op when it already runs); return its status."""
    paths = ServerPaths(home.resolve())
    paths.home.mkdir(parents=True, exist_ok=True)
    paths.home.chmod(0o700)  # Argilla's database there holds every user's API key
    api_key = _kept_secret(paths, "owner_api_key", config.owner.api_key_env)
    running = _alive(paths.pid)
    if running and health(config, api_key):
        return server_status(config, home)
    if running:
        raise AnnotationServerError(
            f"an argilla-server (pid {running}) from {paths.home} is running but does not answer at "
            f"{config.resolved_url} with the configured owner key (still starting, or the key changed): "
            "wait, or `prefcurate argilla stop` and start again"
        )
    if config.server.host not in ("127.0.0.1", "localhost", "::1"):
        log.warning("argilla will listen on %s, beyond this machine: put TLS in front of it", config.server.host)

    python = ensure_server_venv(server_venv(config))
    mode, redis_url = _choose_redis(config, paths)
    paths.redis_choice.write_text("fakeredis" if mode == "fakeredis" else redis_url.split("@")[-1])
    # Only what a service needs from our environment: nothing else (API keys of other services,
    # annotators' passwords) reaches the server process.
    env = {
        **{k: v for k, v in os.environ.items() if k in SERVICE_ENV or k.startswith("LC_")},
        "ARGILLA_HOME_PATH": str(paths.home),
        "ARGILLA_SEARCH_ENGINE": config.server.search_engine,
        "ARGILLA_AUTH_SECRET_KEY": _kept_secret(paths, "auth_secret_key", None),
        "HF_HUB_OFFLINE": "1",
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "PREFCURATE_ARGILLA_OWNER_USERNAME": config.owner.username,
        "PREFCURATE_ARGILLA_OWNER_PASSWORD": _kept_secret(paths, "owner_password", config.owner.password_env),
        "PREFCURATE_ARGILLA_OWNER_API_KEY": api_key,
    }
    if redis_url:
        env["ARGILLA_REDIS_URL"] = redis_url
    if config.server.database_url:
        env["ARGILLA_DATABASE_URL"] = config.server.database_url
    if config.server.elasticsearch_url:
        env["ARGILLA_ELASTICSEARCH"] = config.server.elasticsearch_url

    with open(paths.log, "ab") as out:
        process = subprocess.Popen(
            [str(python), str(LAUNCHER), "--host", config.server.host, "--port", str(config.server.port),
             "--redis", mode],
            env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, cwd=paths.home,
        )
    paths.pid.write_text(str(process.pid))
    deadline = time.monotonic() + config.server.start_timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            _stop_pid_file(paths.redis_pid)
            raise AnnotationServerError(
                f"argilla-server exited with code {process.returncode} while starting; last log lines:\n"
                + _tail(paths.log)
            )
        if health(config, api_key):
            log.info("argilla-server ready at %s (home %s)", config.resolved_url, paths.home)
            return server_status(config, home)
        time.sleep(0.5)
    stop_server(home)
    raise AnnotationServerError(
        f"argilla-server did not answer at {config.resolved_url} within {config.server.start_timeout_s:g} s; "
        f"last log lines:\n{_tail(paths.log)}"
    )


def _tail(path: Path, lines: int = 20) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else "(no log)"


def _stop_pid_file(pid_file: Path, grace_s: float = 15.0) -> bool:
    pid = _alive(pid_file)
    if pid is None:
        pid_file.unlink(missing_ok=True)
        return False
    try:
        os.killpg(pid, signal.SIGTERM)  # the launcher leads its own process group
        deadline = time.monotonic() + grace_s
        while time.monotonic() < deadline and _alive(pid_file):
            time.sleep(0.1)
        if _alive(pid_file):
            os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:  # it exited meanwhile
        pass
    pid_file.unlink(missing_ok=True)
    return True


def stop_server(home: Path) -> bool:
    """Stop the server (and the redis-server it started); False when nothing was running."""
    paths = ServerPaths(home.resolve())
    stopped = _stop_pid_file(paths.pid)
    _stop_pid_file(paths.redis_pid)
    return stopped


def server_status(config: ArgillaConfig, home: Path) -> dict:
    paths = ServerPaths(home.resolve())
    pid = _alive(paths.pid)
    try:
        info = health(config, owner_api_key(config, home))
    except AnnotationServerError:
        info = None
    return {
        "url": config.resolved_url,
        "running": bool(info),
        "pid": pid,
        "home": str(paths.home),
        "version": (info or {}).get("version"),
        "search_engine": ((info or {}).get("search_engine") or {}).get("engine"),
        "redis": paths.redis_choice.read_text() if info and paths.redis_choice.exists() else None,
        "log": str(paths.log),
    }
