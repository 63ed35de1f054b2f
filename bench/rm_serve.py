"""Serving throughput: `prefcurate serve-rm`'s server against a naive one, same checkpoint.

The checkpoint: the embedded SmolLM2-135M with a fixed random score head (what a served reward
model costs does not depend on how well it was trained). Requests: one (prompt, response) item
each, 20-300 tokens, from 1, 16 and 64 concurrent clients.

Ours: rm/serving.py as `prefcurate serve-rm` runs it (dynamic batching across requests, length-
sorted batches, precision auto: bf16 mixed where the hardware has it natively). Baseline: the
same HTTP server class with a handler that runs one fp32 forward per request (one at a time: one
model, and concurrent forwards only fight over the cores).

    python bench/rm_serve.py [--requests 128] [--device auto] [--clients 1 16 64]

Ends with: RESULT ratio=<our requests/s over the naive server's at the most clients> ...
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

from hardware import default_device, hardware_fields  # noqa: E402

from prefcurate.core.local_models import resolve_model  # noqa: E402
from prefcurate.rm.data import render  # noqa: E402
from prefcurate.rm.model import load_reward_model  # noqa: E402
from prefcurate.rm.score import RewardScorer  # noqa: E402
from prefcurate.rm.serving import BatchingScorer, RewardServer  # noqa: E402

WORDS = ("the model answers every question with care and a little detail about what was asked and why it "
         "matters to the person asking it today").split()


def make_checkpoint(folder: Path) -> Path:
    base = resolve_model("embedded:smollm2-135m-instruct", ROOT / "prefcurate_out" / "models")
    torch.manual_seed(0)
    model, tokenizer = load_reward_model(base, new_head=True)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def make_items(n: int, seed: int = 0) -> list[dict]:
    rng = random.Random(seed)

    def text(words: int) -> str:
        return " ".join(rng.choice(WORDS) for _ in range(words)).capitalize() + "."

    return [{"prompt": text(rng.randint(8, 40)), "response": text(rng.randint(12, 260))} for _ in range(n)]


class NaiveServer(ThreadingHTTPServer):
    """One request, one fp32 forward: what a first serving script does."""

    daemon_threads = True
    request_queue_size = 256  # as ours: a small backlog resets connections, which is not what is measured

    def __init__(self, address, checkpoint: Path, device: str):
        super().__init__(address, NaiveHandler)
        self.model, self.tokenizer = load_reward_model(str(checkpoint), device)
        self.model.eval()
        self.device, self.lock = device, threading.Lock()


class NaiveHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:
        pass

    def do_POST(self) -> None:  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        rewards = []
        for item in body["items"]:
            text = render(self.server.tokenizer, item["prompt"], item["response"])
            ids = self.server.tokenizer(text, add_special_tokens=False, return_tensors="pt")["input_ids"][:, -512:]
            with self.server.lock, torch.inference_mode():
                rewards.append(self.server.model(input_ids=ids.to(self.server.device)).logits.item())
        payload = json.dumps({"rewards": rewards}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


def serve(server: ThreadingHTTPServer) -> str:
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{server.server_address[1]}/score"


def load(url: str, items: list[dict], clients: int) -> dict:
    """Every item as its own request, from `clients` threads; requests/s and latency percentiles."""
    latencies, rewards = [], [None] * len(items)
    next_index, lock = [0], threading.Lock()

    def client() -> None:
        while True:
            with lock:
                index = next_index[0]
                next_index[0] += 1
            if index >= len(items):
                return
            request = urllib.request.Request(url, data=json.dumps({"items": [items[index]]}).encode(), method="POST")
            started = time.perf_counter()
            with urllib.request.urlopen(request, timeout=600) as response:
                rewards[index] = json.loads(response.read())["rewards"][0]
            with lock:
                latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - started
    if None in rewards:
        raise RuntimeError(f"{rewards.count(None)} of {len(items)} requests to {url} failed")
    ordered = sorted(latencies)
    return {"rps": len(items) / seconds, "p50_ms": 1000 * statistics.median(ordered),
            "p99_ms": 1000 * ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))], "rewards": rewards}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=128)
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 16, 64])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--max-batch", type=int, default=64)
    args = parser.parse_args()
    device = default_device() if args.device == "auto" else args.device
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="prefcurate-serve-") as tmp:
        checkpoint = make_checkpoint(Path(tmp) / "rm")
        scorer = RewardScorer(checkpoint, device, 512, "auto", compile="auto")  # as serve-rm's defaults
        batcher = BatchingScorer(scorer, args.max_batch, 5.0, 4096, 16)
        compile_started = time.perf_counter()
        compiled = batcher.warm_up()  # as serve-rm does before serving (counted in seconds=)
        compile_s = time.perf_counter() - compile_started
        ours = serve(RewardServer(("127.0.0.1", 0), batcher, max_items=16))
        naive = serve(NaiveServer(("127.0.0.1", 0), checkpoint, device))
        items = make_items(args.requests)
        load(ours, items[:8], 4)  # warm both up (first forwards allocate)
        load(naive, items[:8], 1)
        figures = {}
        for clients in args.clients:
            figures[clients] = {"ours": load(ours, items, clients), "naive": load(naive, items, clients)}
            ours_f, naive_f = figures[clients]["ours"], figures[clients]["naive"]
            print(f"{clients:>3} clients: ours {ours_f['rps']:6.1f} req/s (p50 {ours_f['p50_ms']:.0f} ms, p99 "
                  f"{ours_f['p99_ms']:.0f} ms) | naive {naive_f['rps']:6.1f} req/s (p50 {naive_f['p50_ms']:.0f} ms, "
                  f"p99 {naive_f['p99_ms']:.0f} ms) | {ours_f['rps'] / naive_f['rps']:.2f}x", flush=True)
    most = max(args.clients)
    ours_f, naive_f = figures[most]["ours"], figures[most]["naive"]
    difference = max(abs(a - b) for a, b in zip(ours_f["rewards"], naive_f["rewards"]))
    spread = statistics.pstdev(naive_f["rewards"])
    print(f"RESULT ratio={ours_f['rps'] / naive_f['rps']:.2f} clients={most} rps={ours_f['rps']:.1f} "
          f"rps_naive={naive_f['rps']:.1f} p50_ms={ours_f['p50_ms']:.0f} p99_ms={ours_f['p99_ms']:.0f} "
          f"p99_ms_naive={naive_f['p99_ms']:.0f} precision={scorer.precision} max_reward_diff={difference:.4f} "
          f"reward_std={spread:.4f} compiled={compiled} compile_s={compile_s:.0f} requests={args.requests} seconds={time.perf_counter() - started:.0f} "
          f"{hardware_fields()}")


if __name__ == "__main__":
    main()
