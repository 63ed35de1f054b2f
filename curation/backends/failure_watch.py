"""Stop early when an endpoint is plainly not working, instead of making every call.

A refused key (HTTP 401/403) stops at once: no later call will fare better. A run of transport
failures (connection, timeout, 5xx; each already retried by the client) stops after
`backend.max_consecutive_failures`. What was answered before is stored by the caller."""

from __future__ import annotations

from prefcurate.core.config import BackendConfig
from prefcurate.core.report import StageFailed
from prefcurate.curation.backends.base import ChatResult

REFUSED = ("http_401", "http_403")
TRANSPORT = ("connection", "timeout", "server_error", "http_404", "http_502", "http_503", "http_504")


class EndpointFailing(StageFailed):
    """The endpoint refuses or cannot be reached: the stage stops (exit 1)."""


class FailureWatch:
    def __init__(self, stage: str, name: str, backend: BackendConfig):
        self.stage, self.name, self.backend = stage, name, backend
        self.limit = backend.max_consecutive_failures
        self.in_a_row: list[str] = []

    def _where(self) -> str:
        return self.backend.base_url or "the OpenAI API"

    def observe(self, result: ChatResult) -> None:
        kind = result.error_kind
        if kind in REFUSED:
            raise EndpointFailing(
                f"{self.stage}: {self.name} at {self._where()} refused the request ({kind}): check the API key in "
                f"${self.backend.api_key_env} and the model name {self.backend.model!r}. Error: {result.error[:200]}")
        if kind in TRANSPORT:
            self.in_a_row.append(result.error)
            if len(self.in_a_row) >= self.limit:
                raise EndpointFailing(
                    f"{self.stage}: {self.name}: the last {len(self.in_a_row)} calls to {self._where()} failed "
                    f"({kind}, after the client's retries); is the server up? Last error: {result.error[:200]}")
        else:
            self.in_a_row.clear()
