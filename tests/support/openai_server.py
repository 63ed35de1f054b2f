"""A small OpenAI-compatible chat-completions server for tests and benchmarks.

It speaks the real HTTP protocol (POST /v1/chat/completions, GET /v1/models, and the Batch API's
/v1/files and /v1/batches: tests/support/batch_api.py) so the real `openai` client talks to it. Its answers are deterministic:
- a pairwise judge prompt (our template's RESPONSE_A / RESPONSE_B blocks) gets a verdict chosen by
  `judge_rule` (default: the longer response wins, so verdicts are position-consistent), with
  logprobs when the request asks for them, as JSON when it sets `response_format` (or a 400 when
  told the endpoint does not support it), else as text with a stated confidence;
- a rating prompt (one RESPONSE block, an "Aspects:" list and a scale) gets a score per aspect from
  `rating_rule` (default: longer responses score higher), as JSON or lines, with log-probabilities
  over the scale at each score token; a ranking prompt (RESPONSE_A, RESPONSE_B, ... blocks under
  "Rank the responses") gets the letters ordered by `ranking_rule` (default: longest first);
- anything else gets a reply derived from a hash of the prompt and seed.
It misbehaves on demand: fixed latency, scripted or random 429 (with Retry-After) / 500 /
garbage bodies / hangs past the client's timeout / bad verdicts (empty, malformed, truncated), and
every answer shape of a broken endpoint or a proxy before it (SHAPES), or a 404 for a model it does
not serve.
Run it as a process for benchmarks: `python -m tests.support.openai_server --port 8011 --latency 0.2`.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import os
import random
import re
import signal
import socket
import struct
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

from aiohttp import web

_BLOCK = re.compile(r"<<<RESPONSE_(A|B)\n(.*?)\nRESPONSE_\1>>>", re.DOTALL)
_WORDS = ("alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi omicron pi rho sigma "
          "tau upsilon phi chi psi omega").split()


def call_key(body: dict) -> str:
    """What identifies a call across runs: the request without transport details."""
    return hashlib.sha256(json.dumps({k: body.get(k) for k in ("model", "messages", "response_format", "seed")},
                                     sort_keys=True).encode()).hexdigest()


def longer_wins(response_a: str, response_b: str) -> str:
    if len(response_a) == len(response_b):
        return "tie"
    return "A" if len(response_a) > len(response_b) else "B"


def always_a(response_a: str, response_b: str) -> str:
    return "A"


def length_score(response: str, low: int, high: int) -> int:
    """Longer scores higher, one point per 12 characters above the scale's bottom."""
    return min(high, low + len(response) // 12)


def longest_first(responses: dict[str, str]) -> list[str]:
    return sorted(responses, key=lambda label: (-len(responses[label]), label))


def first_shown_first(responses: dict[str, str]) -> list[str]:
    """A position-biased ranker: whatever is shown first comes first, the rest longest first."""
    rest = longest_first({label: text for label, text in responses.items() if label != "A"})
    return ["A", *rest]


_RATING_BLOCK = re.compile(r"<<<RESPONSE\n(.*?)\nRESPONSE>>>", re.DOTALL)
_RANKING_BLOCK = re.compile(r"<<<RESPONSE_([A-Z])\n(.*?)\nRESPONSE_\1>>>", re.DOTALL)
_SCALE = re.compile(r"from (\d+) \(fails it entirely\) to (\d+) \(meets it fully\)")
_ASPECT = re.compile(r"^- ([\w.-]+): ", re.MULTILINE)


# What a misbehaving endpoint (or a proxy before it) answers instead of a chat completion, as
# scripted faults: a proxy's HTML page with status 200 or 502, a completion with no choices, a
# choice with null content, the JSON body cut short, a slow drip (one byte every drip_every_s, for
# hang_s: no single read ever times out), the connection reset unanswered, the answer as a server-sent
# event stream (a wrong content type), and nothing at all for hang_s.
SHAPES = ("html_200", "html_502", "no_choices", "null_content", "truncated_body", "drip", "reset", "wrong_type",
          "hang")
_PROXY_PAGE = ("<!DOCTYPE html><html><head><title>502 Bad Gateway</title></head><body><h1>Bad Gateway</h1>"
               "<p>The proxy server received an invalid response from an upstream server.</p></body></html>")


@dataclass
class Behaviour:
    latency_s: float = 0.0
    # Scripted faults, consumed one per request in order: "429", "500", "garbage", "hang", "empty",
    # "malformed", "truncated", "cut_after_verdict" (a JSON or text verdict cut at the token limit
    # after the verdict), "unclosed" (the same text, but finish_reason stop), "ok", and the SHAPES;
    # for rating and ranking prompts also "off_scale" (a score past the scale's top), "repeat" and
    # "missing" (a ranking naming a response twice, or leaving one out).
    script: list[str] = field(default_factory=list)
    rate_429: float = 0.0
    rate_500: float = 0.0
    rate_garbage: float = 0.0
    rate_hang: float = 0.0
    rate_bad_verdict: float = 0.0  # split evenly between empty, malformed and truncated answers
    hang_s: float = 30.0
    drip_every_s: float = 0.1  # "drip": the pause between the bytes it sends
    models: tuple[str, ...] | None = None  # when set, a request for any other model gets a 404
    retry_after_s: float = 0.05
    logprobs: bool = True
    judge_rule: Callable[[str, str], str] = longer_wins
    rating_rule: Callable[[str, int, int], int] = length_score  # (response, low, high) -> score
    ranking_rule: Callable[[dict[str, str]], list[str]] = longest_first  # {letter: response} -> letters best first
    # How a rating's log-probabilities spread the rest of judge_confidence over the stated score's
    # neighbours: "even" (half each), or "by_length" (towards the next point as the response nears
    # it, as a calibrated judge's would): expected scores then differ between responses of
    # different lengths instead of tying on the integer.
    rating_spread: str = "even"
    judge_confidence: float = 0.9
    # When set, the confidence of each verdict (its logprob and stated confidence) from the two texts.
    judge_confidence_rule: Callable[[str, str], float] | None = None
    supports_response_format: bool = True
    # Accepts response_format but answers as it likes (prose, cut at max_tokens), as some servers do.
    enforces_response_format: bool = True
    ignores_sampling: bool = False  # every sample of a prompt is the same text (seed/temperature ignored)
    # kill -9 `kill_pid` at the `kill_at_answer`-th answer: from then on nothing more is answered,
    # and after `kill_settle_s` (so the client has received every answer sent) the kill is sent.
    # `in_flight_at_kill` then counts the calls asked but not answered.
    kill_pid: int | None = None
    kill_at_answer: int | None = None
    kill_settle_s: float = 0.3
    api_key: str | None = None  # when set, other keys get a 401
    echo_key_in_errors: bool = False  # the 401 message quotes the key it was given (some providers do)
    seed: int = 0


class OpenAICompatServer:
    """Run with `with OpenAICompatServer() as server:`; `server.base_url` is the /v1 URL."""

    def __init__(self, behaviour: Behaviour | None = None, host: str = "127.0.0.1", port: int = 0):
        self.behaviour = behaviour or Behaviour()
        self.host, self.port = host, port
        self.requests: list[dict] = []  # every chat request body received, in order
        self.outcomes: list[str] = []
        self.answered: list[str] = []  # call_key of every request answered, in order
        self.in_flight_at_kill: int | None = None
        self._rng = random.Random(self.behaviour.seed)
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        from tests.support.batch_api import BatchAPI

        self.batch_api = BatchAPI(self)  # /v1/files and /v1/batches (the OpenAI Batch protocol)

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    # -- lifecycle -----------------------------------------------------------------------------
    def start(self) -> OpenAICompatServer:
        ready = threading.Event()

        def serve() -> None:
            self._loop = asyncio.new_event_loop()
            asyncio.set_event_loop(self._loop)
            self._loop.run_until_complete(self._start_site())
            ready.set()
            self._loop.run_forever()

        self._thread = threading.Thread(target=serve, name="openai-compat-server", daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("test server did not start")
        return self

    async def _start_site(self) -> None:
        self._stopping = asyncio.Event()
        app = web.Application(client_max_size=256 * 1024 * 1024)  # batch input files are large
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_get("/v1/models", self._models)
        self.batch_api.add_routes(app.router)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]

    def stop(self) -> None:
        if self._loop is None:
            return
        self._loop.call_soon_threadsafe(self._stopping.set)  # release held answers
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def __enter__(self) -> OpenAICompatServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- handlers ------------------------------------------------------------------------------
    async def _models(self, request: web.Request) -> web.Response:
        models = self.behaviour.models or ("test-model",)
        return web.json_response({"object": "list", "data": [{"id": model, "object": "model"} for model in models]})

    def _next_fault(self) -> str:
        b = self.behaviour
        with self._lock:
            if b.script:
                return b.script.pop(0)
            roll = self._rng.random()
        for name, rate in (("429", b.rate_429), ("500", b.rate_500), ("garbage", b.rate_garbage), ("hang", b.rate_hang)):
            if roll < rate:
                return name
            roll -= rate
        if roll < b.rate_bad_verdict:
            return ("empty", "malformed", "truncated")[int(3 * roll / b.rate_bad_verdict)]
        return "ok"

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        with self._lock:
            self.requests.append(body)
        given = request.headers.get("Authorization", "").removeprefix("Bearer ")
        if self.behaviour.api_key is not None and given != self.behaviour.api_key:
            shown = given if self.behaviour.echo_key_in_errors else given[:3] + "***"
            return web.json_response({"error": {"message": f"Incorrect API key provided: {shown}",
                                                "type": "invalid_request_error", "code": "invalid_api_key"}},
                                     status=401)
        if self.behaviour.models is not None and body.get("model") not in self.behaviour.models:
            return web.json_response({"error": {"message": f"The model `{body.get('model')}` does not exist or you do "
                                                           "not have access to it.", "type": "invalid_request_error",
                                                "code": "model_not_found"}}, status=404)
        if self.behaviour.latency_s:
            await asyncio.sleep(self.behaviour.latency_s)
        fault = self._next_fault()
        with self._lock:
            self.outcomes.append(fault)
        if fault == "429":
            return web.json_response({"error": {"message": "rate limited", "type": "rate_limit"}}, status=429,
                                     headers={"Retry-After": str(self.behaviour.retry_after_s)})
        if fault == "500":
            return web.json_response({"error": {"message": "internal error", "type": "server_error"}}, status=500)
        if fault == "hang":
            await self._pause(self.behaviour.hang_s)
        elif fault in SHAPES:
            return await self._misshapen(request, body, fault)
        if fault == "garbage":
            return web.Response(text="<html>not json{", content_type="application/json")
        if body.get("response_format") and not self.behaviour.supports_response_format:
            return web.json_response({"error": {"message": "response_format is not supported by this server",
                                                "type": "invalid_request_error"}}, status=400)
        completion = self._completion(body, fault)
        if self.behaviour.kill_at_answer is not None and not await self._answer_or_kill():
            return web.json_response({"error": {"message": "stopping"}}, status=503)
        with self._lock:
            self.answered.append(call_key(body))
        return web.json_response(completion)

    async def _pause(self, seconds: float) -> None:
        """Sleep, but end early when the server stops (a held answer must not hold up its shutdown)."""
        try:
            await asyncio.wait_for(self._stopping.wait(), seconds)
        except asyncio.TimeoutError:
            pass

    async def _misshapen(self, request: web.Request, body: dict, shape: str) -> web.StreamResponse:
        """One of the SHAPES instead of a chat completion."""
        if shape in ("html_200", "html_502"):
            return web.Response(text=_PROXY_PAGE, status=200 if shape == "html_200" else 502, content_type="text/html")
        if shape == "reset":
            return self._reset(request)
        completion = self._completion(body)
        if shape == "no_choices":
            completion["choices"] = []
        elif shape == "null_content":
            completion["choices"][0]["message"]["content"] = None
        text = json.dumps(completion)
        if shape == "truncated_body":
            text = text[: len(text) // 2]
        elif shape == "wrong_type":
            return web.Response(text=f"data: {text}\n\ndata: [DONE]\n\n", content_type="text/event-stream")
        elif shape == "drip":
            return await self._drip(request, text)
        return web.Response(text=text, content_type="application/json")

    @staticmethod
    def _reset(request: web.Request) -> web.Response:
        """Close the connection with a TCP reset (linger 0), answering nothing."""
        sock = request.transport.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        request.transport.abort()
        return web.Response(status=204)  # never sent: the connection is gone

    async def _drip(self, request: web.Request, text: str) -> web.StreamResponse:
        """Headers at once, then a space (JSON allows leading whitespace) every drip_every_s for hang_s,
        then the answer: each read succeeds, the whole takes hang_s."""
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        deadline = time.monotonic() + self.behaviour.hang_s
        try:
            while time.monotonic() < deadline and not self._stopping.is_set():
                await response.write(b" ")
                await self._pause(self.behaviour.drip_every_s)
            await response.write(text.encode())
            await response.write_eof()
        except ConnectionResetError:  # the client gave up waiting
            pass
        return response

    async def _answer_or_kill(self) -> bool:
        """At the kill_at_answer-th answer: stop answering, let the client take in what it got, then
        kill it. False for an answer held back (it is never sent)."""
        b = self.behaviour
        with self._lock:
            if self.in_flight_at_kill is None and len(self.answered) + 1 < b.kill_at_answer:
                return True
            reached = self.in_flight_at_kill is None
            if reached:
                self.in_flight_at_kill = -1  # killing: hold everything from now on
        if reached:
            await asyncio.sleep(b.kill_settle_s)
            with self._lock:
                self.in_flight_at_kill = len(self.requests) - len(self.answered)
            os.kill(b.kill_pid, signal.SIGKILL)
        await self._stopping.wait()
        return False

    def _completion(self, body: dict, fault: str = "ok") -> dict:
        messages = body.get("messages", [])
        prompt = "\n".join(str(m.get("content", "")) for m in messages)
        blocks = dict(_BLOCK.findall(prompt))
        want_logprobs = bool(body.get("logprobs")) and self.behaviour.logprobs
        logprobs, finish_reason = None, "stop"
        if "Rank the responses below" in prompt or _RATING_BLOCK.search(prompt):
            text, finish_reason, logprobs = self._scores_answer(prompt, body, fault, want_logprobs)
        elif "A" in blocks and "B" in blocks and body.get("response_format") and not self.behaviour.enforces_response_format:
            rambling = ("Let me compare the two responses carefully, looking at accuracy, helpfulness and tone. "
                        "Response A opens with").split()
            cut = body.get("max_tokens") or 64
            rambles = hashlib.sha256(prompt.encode()).digest()[0] % 2 == 1
            text = " ".join(rambling[:cut]) if rambles else "I think both have merits."
            finish_reason = "length" if rambles else "stop"
        elif "A" in blocks and "B" in blocks:
            verdict = self.behaviour.judge_rule(blocks["A"], blocks["B"])
            rule = self.behaviour.judge_confidence_rule
            confidence = rule(blocks["A"], blocks["B"]) if rule else self.behaviour.judge_confidence
            tokens = self._verdict_tokens(verdict, as_json=bool(body.get("response_format")), confidence=confidence)
            if fault == "empty":
                tokens = []
            elif fault == "malformed":
                tokens = [("I cannot decide between these two.", False)]
            elif fault == "truncated":
                tokens, finish_reason = tokens[:1], "length"
            elif fault in ("cut_after_verdict", "unclosed"):
                # the answer up to and including the verdict, then `, "confidence": ` and nothing more:
                # cut at the token limit, or (unclosed) with finish_reason stop, as a broken server says
                head = tokens[:next(i for i, (_, is_verdict) in enumerate(tokens) if is_verdict) + 1]
                tokens = head + [('", "confidence": ' if head[0][0].startswith("{") else "\nConfidence: ", False)]
                finish_reason = "length" if fault == "cut_after_verdict" else "stop"
            text = "".join(token for token, _ in tokens)
            if want_logprobs and tokens:
                logprobs = self._logprobs(tokens, verdict, confidence)
        else:
            seed = None if self.behaviour.ignores_sampling else body.get("seed")
            text = self._reply(prompt, seed, body.get("max_tokens") or 64)
        completion_tokens = len(text.split())
        return {
            "id": "chatcmpl-" + hashlib.sha1(f"{prompt}{time.time()}".encode()).hexdigest()[:12],
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model", "test-model"),
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                         "finish_reason": finish_reason, "logprobs": logprobs}],
            "usage": {"prompt_tokens": len(prompt.split()), "completion_tokens": completion_tokens,
                      "total_tokens": len(prompt.split()) + completion_tokens},
        }

    def _scores_answer(self, prompt: str, body: dict, fault: str, want_logprobs: bool) -> tuple[str, str, dict | None]:
        """A rating or ranking judge's answer: (text, finish_reason, logprobs)."""
        response = ""
        as_json = bool(body.get("response_format"))
        if "Rank the responses below" in prompt:
            letters = self.behaviour.ranking_rule(dict(_RANKING_BLOCK.findall(prompt)))
            if fault == "repeat":
                letters = [letters[0], *letters[:-1]]
            elif fault == "missing":
                letters = letters[:-1]
            pieces = [json.dumps(letter) if as_json else letter for letter in letters]
            separator = ", " if as_json else " > "
            tokens = [('{"ranking": [', None)] if as_json else []
            for index, piece in enumerate(pieces):
                tokens += [(separator, None)] if index else []
                tokens.append((piece, None))
            tokens += [("]}", None)] if as_json else []
        else:
            low, high = (int(value) for value in _SCALE.search(prompt).groups())
            response = _RATING_BLOCK.search(prompt).group(1)
            score = self.behaviour.rating_rule(response, low, high)
            aspects = _ASPECT.findall(prompt.split("Aspects:", 1)[1].split("User request:", 1)[0])
            if fault == "off_scale":
                score = high + 2
            tokens = [('{"scores": {', None)] if as_json else []
            for index, aspect in enumerate(aspects):
                lead = (", " if index else "") + f'"{aspect}": ' if as_json else f"{aspect}: "
                tokens += [(lead, None), (str(score), (low, high)), ("" if as_json else "\n", None)]
            if as_json:
                tokens.append(("}}", None))
            tokens = [(token, scale) for token, scale in tokens if token]
        finish_reason = "stop"
        if fault == "empty":
            tokens = []
        elif fault == "malformed":
            tokens = [("Both responses have their merits; I would rather not score them.", None)]
        elif fault == "truncated":
            tokens, finish_reason = tokens[:max(1, len(tokens) // 2)], "length"
        text = "".join(token for token, _ in tokens)
        if not (want_logprobs and tokens):
            return text, finish_reason, None
        content = []
        for token, scale in tokens:
            p = self.behaviour.judge_confidence
            top = [{"token": token, "logprob": -0.01, "bytes": list(token.encode())}]
            if scale is not None and token.isdigit() and scale[0] <= int(token) <= scale[1]:
                # the stated score at p, its neighbours on the scale sharing the rest
                up, p = 0.5, self.behaviour.judge_confidence
                if self.behaviour.rating_spread == "by_length":
                    # how far the response is into its point (12 characters a point; past the top, ever
                    # closer to 1): more of the rest goes up, and at the top more stays on the point
                    beyond = len(response) - 12 * (int(token) - scale[0])
                    up = (beyond + 0.5) / 12 if int(token) < scale[1] else 1 - 1 / (1 + beyond / 12)
                    p = min(0.99, p + 0.09 * (up - 0.5))
                shares = {int(token) - 1: 1 - up, int(token) + 1: up}
                neighbours = {str(v): share for v, share in shares.items() if scale[0] <= v <= scale[1]}
                total = sum(neighbours.values())
                top = [{"token": token, "logprob": math.log(p), "bytes": list(token.encode())}] + [
                    {"token": other, "logprob": math.log((1 - p) * share / total), "bytes": list(other.encode())}
                    for other, share in neighbours.items()]
            content.append({"token": token, "logprob": top[0]["logprob"], "bytes": list(token.encode()),
                            "top_logprobs": top})
        return text, finish_reason, {"content": content}

    def _verdict_tokens(self, verdict: str, as_json: bool, confidence: float) -> list[tuple[str, bool]]:
        """The answer as (token, is_the_verdict_token) pieces."""
        if as_json:
            return [('{"', False), ("verdict", False), ('": "', False), (verdict, True),
                    (f'", "confidence": {confidence}, "reason": "it follows the principle better"}}', False)]
        return [(verdict, True), (f"\nConfidence: {round(100 * confidence)}\nIt follows the principle better.", False)]

    def _logprobs(self, tokens: list[tuple[str, bool]], verdict: str, p: float) -> dict:
        others = [v for v in ("A", "B", "tie") if v != verdict]
        probabilities = {verdict: p, others[0]: (1 - p) * 0.7, others[1]: (1 - p) * 0.3}
        top = [{"token": token, "logprob": math.log(prob), "bytes": list(token.encode())}
               for token, prob in sorted(probabilities.items(), key=lambda item: -item[1])]
        content = []
        for token, is_verdict in tokens:
            if is_verdict:
                content.append({"token": token, "logprob": math.log(p), "bytes": list(token.encode()), "top_logprobs": top})
            else:
                content.append({"token": token, "logprob": -0.01, "bytes": list(token.encode()),
                                "top_logprobs": [{"token": token, "logprob": -0.01, "bytes": list(token.encode())}]})
        return {"content": content}

    @staticmethod
    def _reply(prompt: str, seed, max_tokens: int) -> str:
        digest = hashlib.sha256(f"{prompt}|{seed}".encode()).digest()
        length = min(max_tokens, 3 + digest[0] % 20)
        return " ".join(_WORDS[digest[(i % 31) + 1] % len(_WORDS)] for i in range(length)).capitalize() + "."


def main() -> None:
    """Serve until interrupted: for benchmarks that need the server in its own process."""
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8011)
    parser.add_argument("--latency", type=float, default=0.0, help="seconds before each answer")
    parser.add_argument("--rating-spread", choices=("even", "by_length"), default="even",
                        help="how a rating's log-probabilities spread over the neighbouring points")
    args = parser.parse_args()
    server = OpenAICompatServer(Behaviour(latency_s=args.latency, rating_spread=args.rating_spread), host=args.host,
                                port=args.port).start()
    print(f"serving {server.base_url}", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        server.stop()


if __name__ == "__main__":
    main()
