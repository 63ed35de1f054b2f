"""Serving a reward model over HTTP to the RL trainers that consume it.

Requests are scored together: each one waits in a bounded queue, and a single worker takes
everything queued (up to `max_batch` items, after at most `max_wait_ms` for more to arrive) and
scores it in one batched, length-sorted pass. Concurrent clients therefore share forward passes
instead of queueing behind one another. The standard library's threading HTTP server carries it,
so the server runs wherever the model does (a GPU machine has no web framework to rely on).

Endpoints:
  GET  /health       {"status": "ok", "members": N, "queued": N, "device": ...}
  POST /score        {"items": [{"prompt": str | "messages": [...], "response": str}, ...]}
                     -> {"rewards": [...], "min": [...], "std": [...]}  (over ensemble members)
  POST /get_reward   OpenRLHF's remote reward model: {"query": [text, ...]}: each text is the whole
                     conversation already formatted by the policy's chat template
                     -> {"rewards": [...], "scores": [...]}
A bearer token, when configured, is required on every POST. A bad request gets a 4xx naming the
field; the server keeps serving.
"""

from __future__ import annotations

import json
import logging
import math
import queue
import statistics
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prefcurate.rm.data import render
from prefcurate.rm.score import RewardScorer, score_sequences

log = logging.getLogger(__name__)


class BadRequest(ValueError):
    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


@dataclass
class _Job:
    texts: list[str]  # rendered conversations, ready to tokenize
    future: Future


class BatchingScorer:
    """Scores rendered texts from many threads in shared batches (one worker thread)."""

    def __init__(self, scorer: RewardScorer, max_batch: int = 64, max_wait_ms: float = 5.0, max_queue: int = 1024,
                 batch_size: int = 16):
        self.scorer, self.max_batch, self.max_wait_s = scorer, max_batch, max_wait_ms / 1000
        self.batch_size = batch_size
        self._queue: queue.Queue[_Job] = queue.Queue(maxsize=max_queue)
        self.batches = 0  # forward rounds run, for /health and tests
        self._worker = threading.Thread(target=self._work, daemon=True, name="reward-batcher")
        self._worker.start()

    def warm_up(self) -> bool:
        """Compile the model's blocks (if its compile setting allows) and run a single item and a small
        batch through them before serving, so that no client waits for the compiler. Returns whether
        it compiled."""
        if not self.scorer.compile_now():
            return False
        started = time.monotonic()
        self._score(["warm up"])  # batch and length of 1 get their own kernels (0/1 specialisation)
        self._score(["a longer text to warm up a batch", "of several items", "of different lengths"])
        log.info("compiled the reward model for serving in %.0f s", time.monotonic() - started)
        return True

    @property
    def queued(self) -> int:
        return self._queue.qsize()

    def submit(self, texts: list[str]) -> Future:
        job = _Job(texts, Future())
        try:
            self._queue.put_nowait(job)
        except queue.Full:
            raise BadRequest("the server is busy (its queue is full); retry later", status=503) from None
        return job.future

    def _take(self) -> list[_Job]:
        jobs = [self._queue.get()]
        size, deadline = len(jobs[0].texts), time.monotonic() + self.max_wait_s
        while size < self.max_batch:
            try:
                job = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            jobs.append(job)
            size += len(job.texts)
        return jobs

    def _work(self) -> None:
        while True:
            jobs = self._take()
            try:
                texts = [text for job in jobs for text in job.texts]
                per_member = self._score(texts)
                self.batches += 1
                start = 0
                for job in jobs:
                    end = start + len(job.texts)
                    job.future.set_result([values[start:end] for values in per_member])
                    start = end
            except Exception as error:  # noqa: BLE001 (a failed batch fails its requests, not the server)
                for job in jobs:
                    if not job.future.done():
                        job.future.set_exception(error)

    def _score(self, texts: list[str]) -> list[list[float]]:
        tokenizer, scorer = self.scorer.tokenizer, self.scorer
        ids = [seq[-scorer.max_length:] for seq in tokenizer(texts, add_special_tokens=False)["input_ids"]]
        return [score_sequences(model, ids, tokenizer.pad_token_id, self.batch_size, scorer.device,
                                autocast_bf16=scorer.precision == "bf16") for model in scorer.members]


def summarize(per_member: list[list[float]]) -> dict:
    """Mean, min and std over ensemble members, per item."""
    by_item = list(zip(*per_member))
    return {"rewards": [statistics.fmean(values) for values in by_item],
            "min": [min(values) for values in by_item],
            "std": [statistics.pstdev(values) for values in by_item]}


def _text(value, where: str) -> str:
    if not isinstance(value, str):
        raise BadRequest(f"{where}: expected a string, got {type(value).__name__}")
    return value


def parse_score_request(body: dict, tokenizer, max_items: int, max_chars: int) -> list[str]:
    """The rendered texts of a /score request, or BadRequest naming the field."""
    items = body.get("items")
    if not isinstance(items, list) or not items:
        raise BadRequest("items: expected a non-empty list of {prompt or messages, response}")
    if len(items) > max_items:
        raise BadRequest(f"items: {len(items)} items, at most {max_items} per request", status=413)
    texts = []
    for index, item in enumerate(items):
        where = f"items[{index}]"
        if not isinstance(item, dict):
            raise BadRequest(f"{where}: expected an object")
        response = _text(item.get("response"), f"{where}.response")
        if "messages" in item:
            messages = item["messages"]
            if not isinstance(messages, list) or not all(
                    isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str)
                    for m in messages):
                raise BadRequest(f"{where}.messages: expected a list of {{role, content}} strings")
            text = render(tokenizer, "", response, json.dumps(messages))
        else:
            text = render(tokenizer, _text(item.get("prompt"), f"{where}.prompt"), response)
        if len(text) > max_chars:
            raise BadRequest(f"{where}: {len(text)} characters, at most {max_chars}", status=413)
        texts.append(text)
    return texts


def parse_openrlhf_request(body: dict, max_items: int, max_chars: int) -> list[str]:
    queries = body.get("query")
    if not isinstance(queries, list) or not queries:
        raise BadRequest("query: expected a non-empty list of formatted texts")
    if len(queries) > max_items:
        raise BadRequest(f"query: {len(queries)} texts, at most {max_items} per request", status=413)
    texts = [_text(query, f"query[{index}]") for index, query in enumerate(queries)]
    for index, text in enumerate(texts):
        if len(text) > max_chars:
            raise BadRequest(f"query[{index}]: {len(text)} characters, at most {max_chars}", status=413)
    return texts


class RewardServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256  # connections waiting to be accepted: RL trainers open many at once

    def __init__(self, address: tuple[str, int], batcher: BatchingScorer, token: str | None = None,
                 max_items: int = 256, max_chars: int = 100_000, timeout_s: float = 120.0):
        super().__init__(address, _Handler)
        self.batcher, self.token = batcher, token
        self.max_items, self.max_chars, self.timeout_s = max_items, max_chars, timeout_s


class _Handler(BaseHTTPRequestHandler):
    server: RewardServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format, *args) -> None:  # noqa: A002 (the base class's name)
        log.debug("%s " + format, self.address_string(), *args)

    def _send(self, status: int, payload: dict) -> None:
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:  # noqa: N802 (the base class's name)
        if self.path.rstrip("/") != "/health":
            self._send(404, {"error": f"no route {self.path}; GET /health, POST /score or /get_reward"})
            return
        scorer = self.server.batcher.scorer
        self._send(200, {"status": "ok", "members": len(scorer.members), "device": scorer.device,
                         "precision": scorer.precision, "queued": self.server.batcher.queued,
                         "batches": self.server.batcher.batches})

    def do_POST(self) -> None:  # noqa: N802
        try:
            payload = self._answer()
        except BadRequest as error:
            self._send(error.status, {"error": str(error)})
            return
        except Exception as error:  # noqa: BLE001 (one request failing leaves the server serving)
            log.exception("scoring failed")
            self._send(500, {"error": f"scoring failed: {type(error).__name__}: {error}"})
            return
        self._send(200, payload)

    def _answer(self) -> dict:
        route = self.path.rstrip("/")
        if route not in ("/score", "/get_reward"):
            raise BadRequest(f"no route {self.path}; POST /score or /get_reward", status=404)
        if self.server.token and self.headers.get("Authorization", "") != f"Bearer {self.server.token}":
            raise BadRequest("Authorization: a valid bearer token is required", status=401)
        length = int(self.headers.get("Content-Length") or 0)
        if length > self.server.max_chars * self.server.max_items:
            raise BadRequest(f"body: {length} bytes is too large", status=413)
        try:
            body = json.loads(self.rfile.read(length) or b"null")
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise BadRequest(f"body: not valid JSON ({error})") from None
        if not isinstance(body, dict):
            raise BadRequest("body: expected a JSON object")
        if route == "/score":
            texts = parse_score_request(body, self.server.batcher.scorer.tokenizer, self.server.max_items,
                                        self.server.max_chars)
        else:
            texts = parse_openrlhf_request(body, self.server.max_items, self.server.max_chars)
        per_member = self.server.batcher.submit(texts).result(timeout=self.server.timeout_s)
        summary = summarize(per_member)
        if any(math.isnan(value) for value in summary["rewards"]):
            raise RuntimeError("the model returned NaN")
        if route == "/get_reward":
            return {"rewards": summary["rewards"], "scores": summary["rewards"]}
        return summary
