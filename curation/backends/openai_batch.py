"""A provider's batch API (the OpenAI Batch protocol): the same chat-completion calls as the online
backend, sent as a JSONL file and answered within the completion window at about half the price.

Upload the requests through /v1/files, create a /v1/batches job, poll it, download its output and
error files. Each line's custom_id is the caller's request key (the judgment id), and its body is
the online backend's (openai_compat.chat_body), so switching modes asks nothing twice. Every batch
carries its chunk id (a hash of its custom ids) as metadata: a run killed between creating a batch
and recording it finds that batch again by listing, instead of submitting it twice.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Iterator

import openai
from openai.types.chat import ChatCompletion

from prefcurate.core.config import BackendConfig
from prefcurate.core.hashing import content_hash
from prefcurate.core.secrets import redact
from prefcurate.curation.backends import backend_identity
from prefcurate.curation.backends.base import ChatRequest, ChatResult
from prefcurate.curation.backends.openai_compat import api_key, chat_body, chat_result

log = logging.getLogger(__name__)
ENDPOINT = "/v1/chat/completions"
FINISHED = ("completed", "failed", "expired", "cancelled")  # nothing more will change


@dataclass(frozen=True)
class BatchState:
    batch_id: str
    status: str
    output_file_id: str | None
    error_file_id: str | None

    @property
    def finished(self) -> bool:
        return self.status in FINISHED


def chunk_id(keys: list[str]) -> str:
    return content_hash("batch-chunk", sorted(keys))[:32]


def split_requests(lines: list[tuple[str, bytes]], max_requests: int, max_bytes: int) -> Iterator[list[tuple[str, bytes]]]:
    """Consecutive chunks under the provider's limits (requests and bytes per input file)."""
    chunk, size = [], 0
    for key, line in lines:
        if chunk and (len(chunk) >= max_requests or size + len(line) > max_bytes):
            yield chunk
            chunk, size = [], 0
        chunk.append((key, line))
        size += len(line)
    if chunk:
        yield chunk


class OpenAIBatchBackend:
    """Submits, polls and downloads batches; the store-side bookkeeping is the caller's."""

    def __init__(self, config: BackendConfig):
        self.config = config
        self.identity = backend_identity(config)  # the online backend's: same cache, same call ids
        self._client = openai.OpenAI(base_url=config.base_url, timeout=config.timeout_s,
                                     max_retries=config.max_retries, api_key=api_key(config))

    def request_line(self, request: ChatRequest) -> bytes:
        return (json.dumps({"custom_id": request.key, "method": "POST", "url": ENDPOINT,
                            "body": chat_body(request, self.config.model)}, ensure_ascii=False) + "\n").encode()

    def find_submitted(self, chunk: str, known: set[str]) -> BatchState | None:
        """A batch this chunk was already submitted as by a run killed before recording it: one with
        its chunk id that the store does not know (`known`: a retry of the same calls has the same
        chunk id as the batch they failed in)."""
        for batch in self._client.batches.list(limit=100):
            if ((batch.metadata or {}).get("prefcurate_chunk") == chunk and batch.id not in known
                    and batch.status not in ("failed", "cancelled")):
                return _state(batch)
        return None

    def submit(self, chunk: str, lines: list[bytes]) -> tuple[BatchState, str]:
        """Upload the lines and create their batch. Returns its state and the input file id."""
        uploaded = self._client.files.create(file=(f"prefcurate-{chunk}.jsonl", b"".join(lines), "application/jsonl"),
                                             purpose="batch")
        batch = self._client.batches.create(input_file_id=uploaded.id, endpoint=ENDPOINT,
                                            completion_window=self.config.completion_window,
                                            metadata={"prefcurate_chunk": chunk})
        return _state(batch), uploaded.id

    def poll(self, batch_id: str) -> BatchState:
        return _state(self._client.batches.retrieve(batch_id))

    def download(self, state: BatchState, want_logprobs: bool = True) -> tuple[dict[str, ChatResult], int]:
        """Results by custom_id from the output and error files, and the number of lines that could
        not be read (they are asked again, like calls that failed)."""
        lines = [line for file_id in (state.output_file_id, state.error_file_id) if file_id
                 for line in self._read_file(file_id)]
        return read_output_lines(lines, want_logprobs)

    def _read_file(self, file_id: str) -> list[str]:
        return self._client.files.content(file_id).text.splitlines()

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> OpenAIBatchBackend:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _state(batch) -> BatchState:
    return BatchState(batch.id, batch.status, batch.output_file_id, batch.error_file_id)


def read_output_lines(lines: list[str], want_logprobs: bool) -> tuple[dict[str, ChatResult], int]:
    """Batch output lines (answers and errors) as results by custom_id, and the count of unreadable lines."""
    results, unreadable = {}, 0
    for raw in lines:
        if not raw.strip():
            continue
        try:
            key, result = _line_result(json.loads(raw), want_logprobs)
        except (ValueError, KeyError, TypeError, AttributeError):
            unreadable += 1
            continue
        if key not in results or results[key].error:  # an answer beats an error for the same call
            results[key] = result
    return results, unreadable


def _line_result(line: dict, want_logprobs: bool) -> tuple[str, ChatResult]:
    key = line["custom_id"]
    if not isinstance(key, str):
        raise TypeError("custom_id")
    error, response = line.get("error"), line.get("response") or {}
    status = response.get("status_code")
    if error or (status is not None and status != 200):
        detail = error or (response.get("body") or {}).get("error") or {}
        message = detail.get("message") if isinstance(detail, dict) else str(detail)
        kind = f"http_{status}" if status and status != 200 else "batch_error"
        return key, ChatResult(key, error=f"{kind}: {redact(str(message or 'no message'))[:300]}")
    return key, chat_result(key, ChatCompletion.model_validate(response["body"]), want_logprobs, None)
