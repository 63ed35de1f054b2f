"""Stop early when an endpoint is plainly not working, instead of making every call.

A refused key (HTTP 401/403) or a model (or route) the server does not have (404) stops at once: no
later call will fare better. A run of transport failures (connection, timeout, 5xx, bodies that are
not chat completions; each already retried) stops after `backend.max_consecutive_failures`. An
endpoint that answers nothing at all for `backend.stall_s` is stopped by its backend
(EndpointStalled). What was answered before is stored by the caller."""

from __future__ import annotations

from prefcurate.core.config import BackendConfig
from prefcurate.core.stage_report import StageFailed
from prefcurate.curation.backends.base import ChatResult

REFUSED = ("http_401", "http_403")
NOT_FOUND = ("http_404",)
TRANSPORT = ("connection", "timeout", "server_error", "malformed_response", "http_502", "http_503", "http_504")
# What a run of each kind of failure suggests.
_HINTS = {"server_error": "the server keeps failing (its log may say why).",
          "malformed_response": "something that is not a chat-completions server answers (a proxy?)."}


class EndpointFailing(StageFailed):
    """The endpoint refuses or cannot be reached: the stage stops (exit 1)."""


class EndpointStalled(EndpointFailing):
    """The endpoint has answered nothing for backend.stall_s while calls wait."""


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
        if kind in NOT_FOUND:  # the reason names the model and what the server offers, or the route
            raise EndpointFailing(f"{self.stage}: {self.name}: {result.error[:400]}")
        if kind in TRANSPORT:
            self.in_a_row.append(result.error)
            if len(self.in_a_row) >= self.limit:
                raise EndpointFailing(
                    f"{self.stage}: {self.name}: the last {len(self.in_a_row)} calls to {self._where()} failed "
                    f"({kind}, after the client's retries); {_HINTS.get(kind, 'is the server up?')} "
                    f"Last error: {result.error[:200]}")
        else:
            self.in_a_row.clear()
