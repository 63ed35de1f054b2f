"""Start argilla-server in one process: migrate, bootstrap the owner, serve.

Run by prefcurate with the server venv's python (see curation/annotation/server.py):

    python launcher.py --host 127.0.0.1 --port 6900 --redis fakeredis

Settings come from the environment argilla-server reads (ARGILLA_HOME_PATH, ARGILLA_DATABASE_URL,
ARGILLA_REDIS_URL, ARGILLA_SEARCH_ENGINE, ARGILLA_AUTH_SECRET_KEY); the owner account from
PREFCURATE_ARGILLA_OWNER_{USERNAME,PASSWORD,API_KEY}. Doing it all in one process saves the ~5 s
of imports each argilla-server CLI call costs.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys

log = logging.getLogger("prefcurate.argilla")


def use_fakeredis() -> None:
    """An in-process Redis stand-in: argilla-server only needs Redis to queue background jobs
    (hub import/export, webhooks), which annotation does not use. Jobs queue and never run."""
    import fakeredis
    import redis

    server = fakeredis.FakeServer()
    redis.from_url = lambda *args, **kwargs: fakeredis.FakeRedis(server=server)
    redis.Redis.from_url = redis.from_url


def migrate() -> None:
    import alembic.config
    from argilla_server.database import ALEMBIC_CONFIG_FILE

    alembic.config.main(argv=["-c", ALEMBIC_CONFIG_FILE, "-q", "upgrade", "head"])


async def bootstrap_owner(username: str, password: str, api_key: str) -> None:
    """Create the owner, or bring an existing owner's password and API key in line with the
    environment (so rotating a key is a restart)."""
    from argilla_server.contexts import accounts
    from argilla_server.database import AsyncSessionLocal
    from argilla_server.enums import UserRole
    from argilla_server.models import User

    async with AsyncSessionLocal() as session:
        user = await accounts.get_user_by_username(session, username)
        if user is None:
            await User.create(
                session,
                first_name=username,
                username=username,
                role=UserRole.owner,
                password_hash=accounts.hash_password(password),
                api_key=api_key,
            )
            log.info("created owner %r", username)
        else:
            await user.update(session, api_key=api_key, password_hash=accounts.hash_password(password), role=UserRole.owner)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=6900)
    parser.add_argument("--redis", choices=["url", "fakeredis"], default="url")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")

    if args.redis == "fakeredis":
        use_fakeredis()
        log.info("redis: in-process stand-in (fakeredis); background jobs will not run")
    else:
        # a URL may carry a password before '@': log only where it points
        log.info("redis: %s", os.environ.get("ARGILLA_REDIS_URL", "redis://localhost:6379/0").split("@")[-1])

    engine = os.environ.get("ARGILLA_SEARCH_ENGINE", "sql")
    if engine == "sql":
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        import sql_search_engine  # noqa: F401  (registers the engine)
    log.info("search engine: %s", engine)

    migrate()
    asyncio.run(
        bootstrap_owner(
            os.environ["PREFCURATE_ARGILLA_OWNER_USERNAME"],
            os.environ["PREFCURATE_ARGILLA_OWNER_PASSWORD"],
            os.environ["PREFCURATE_ARGILLA_OWNER_API_KEY"],
        )
    )
    for name in ("PREFCURATE_ARGILLA_OWNER_PASSWORD", "PREFCURATE_ARGILLA_OWNER_API_KEY"):
        os.environ.pop(name)  # nothing the server spawns or logs later can see them

    import uvicorn

    log.info("listening on http://%s:%d", args.host, args.port)
    uvicorn.run("argilla_server:app", host=args.host, port=args.port, access_log=False, log_level="warning")


if __name__ == "__main__":
    main()
