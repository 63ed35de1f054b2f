"""The OpenAI Batch protocol on the suite's server: /v1/files (upload, content) and /v1/batches
(create, retrieve, list, cancel), answered with the server's own chat completions.

A batch finishes `BatchBehaviour.delay_s` after it is created, on the first poll after that. It
misbehaves on demand: a share of lines fail (they go to the error file, as a provider's do), a
batch expires with only its first half answered, garbage lines appear in the output file, the
first answer comes back in one of LINE_SHAPES, and the client can be killed with SIGKILL the moment
a batch is created (before it hears the batch's id).
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
import uuid
from dataclasses import dataclass

from aiohttp import web

# What an output line holds instead of an answer: not JSON at all, a completion with no choices, a
# choice with null content, a non-200 status inside the line.
LINE_SHAPES = ("garbage_line", "no_choices", "null_content", "status_500")


@dataclass
class BatchBehaviour:
    delay_s: float = 0.0
    fail_share: float = 0.0  # of lines, answered in the error file instead (every k-th line)
    expire: bool = False  # the batch expires: its first half answered, the rest never
    garbage_lines: int = 0  # non-JSON lines added to each output file
    first_line_shape: str | None = None  # one of LINE_SHAPES for the first answered line of the next batch
    kill_pid_on_create: int | None = None  # SIGKILL this process right after creating the next batch


class BatchAPI:
    def __init__(self, server):
        self.server = server
        self.behaviour = BatchBehaviour()
        self.files: dict[str, bytes] = {}
        self.batches: dict[str, dict] = {}
        self.lines_received = 0  # request lines over every batch created: twice the calls means paid twice
        self._lock = threading.Lock()

    def add_routes(self, router) -> None:
        router.add_post("/v1/files", self._upload)
        router.add_get("/v1/files/{file_id}/content", self._content)
        router.add_post("/v1/batches", self._create)
        router.add_get("/v1/batches", self._list)
        router.add_get("/v1/batches/{batch_id}", self._retrieve)
        router.add_post("/v1/batches/{batch_id}/cancel", self._cancel)

    # -- files ---------------------------------------------------------------------------------
    def _file(self, content: bytes, name: str, purpose: str) -> dict:
        file_id = f"file-{uuid.uuid4().hex[:16]}"
        self.files[file_id] = content
        return {"id": file_id, "object": "file", "bytes": len(content), "created_at": int(time.time()),
                "filename": name, "purpose": purpose, "status": "processed"}

    async def _upload(self, request: web.Request) -> web.Response:
        form = await request.post()
        upload = form["file"]
        return web.json_response(self._file(upload.file.read(), upload.filename, str(form.get("purpose", "batch"))))

    async def _content(self, request: web.Request) -> web.Response:
        content = self.files.get(request.match_info["file_id"])
        if content is None:
            return web.json_response({"error": {"message": "no such file"}}, status=404)
        return web.Response(body=content, content_type="application/octet-stream")

    # -- batches -------------------------------------------------------------------------------
    async def _create(self, request: web.Request) -> web.Response:
        body = await request.json()
        content = self.files.get(body.get("input_file_id"))
        if content is None:
            return web.json_response({"error": {"message": "input_file_id: no such file"}}, status=400)
        lines = [json.loads(line) for line in content.decode().splitlines() if line.strip()]
        batch_id = f"batch_{uuid.uuid4().hex[:16]}"
        batch = {"id": batch_id, "object": "batch", "endpoint": body["endpoint"], "input_file_id": body["input_file_id"],
                 "completion_window": body.get("completion_window", "24h"), "status": "validating",
                 "created_at": int(time.time()), "metadata": body.get("metadata"), "output_file_id": None,
                 "error_file_id": None, "request_counts": {"total": len(lines), "completed": 0, "failed": 0}}
        with self._lock:
            self.batches[batch_id] = {"public": batch, "lines": lines, "created": time.monotonic()}
            self.lines_received += len(lines)
        if self.behaviour.kill_pid_on_create is not None:
            pid, self.behaviour.kill_pid_on_create = self.behaviour.kill_pid_on_create, None
            os.kill(pid, signal.SIGKILL)  # the batch exists; its creator never hears of it
        return web.json_response(batch)

    async def _list(self, request: web.Request) -> web.Response:
        data = [self._advance(batch_id) for batch_id in list(self.batches)][::-1]  # newest first
        return web.json_response({"object": "list", "data": data, "first_id": data[0]["id"] if data else None,
                                  "last_id": data[-1]["id"] if data else None, "has_more": False})

    async def _retrieve(self, request: web.Request) -> web.Response:
        batch_id = request.match_info["batch_id"]
        if batch_id not in self.batches:
            return web.json_response({"error": {"message": "no such batch"}}, status=404)
        return web.json_response(self._advance(batch_id))

    async def _cancel(self, request: web.Request) -> web.Response:
        batch = self.batches[request.match_info["batch_id"]]["public"]
        if batch["status"] not in ("completed", "failed", "expired", "cancelled"):
            batch["status"] = "cancelled"
        return web.json_response(batch)

    def _advance(self, batch_id: str) -> dict:
        """The batch as a poll now sees it: in progress until its delay has passed, then finished."""
        with self._lock:
            entry = self.batches[batch_id]
            batch = entry["public"]
            if batch["status"] in ("validating", "in_progress"):
                if time.monotonic() - entry["created"] < self.behaviour.delay_s:
                    batch["status"] = "in_progress"
                else:
                    self._finish(batch, entry["lines"])
            return dict(batch)

    def _finish(self, batch: dict, lines: list[dict]) -> None:
        b = self.behaviour
        answered = lines[: len(lines) // 2] if b.expire else lines
        every = round(1 / b.fail_share) if b.fail_share else 0
        output, errors = [], []
        for index, line in enumerate(answered):
            if every and index % every == every - 1:
                errors.append({"id": f"batch_req_{index}", "custom_id": line["custom_id"], "response": None,
                               "error": {"code": "server_error", "message": "the model could not answer"}})
                continue
            completion = self.server._completion(line["body"])
            output.append({"id": f"batch_req_{index}", "custom_id": line["custom_id"], "error": None,
                           "response": {"status_code": 200, "request_id": f"req_{index}", "body": completion}})
        rows = [json.dumps(row) + "\n" for row in output]
        if b.first_line_shape and rows:
            rows[0] = _misshapen(output[0], b.first_line_shape)
            b.first_line_shape = None
        text = "".join(rows) + "not json at all {\n" * b.garbage_lines
        if output or b.garbage_lines:
            batch["output_file_id"] = self._file(text.encode(), "output.jsonl", "batch_output")["id"]
        if errors:
            batch["error_file_id"] = self._file("".join(json.dumps(row) + "\n" for row in errors).encode(),
                                                "errors.jsonl", "batch_output")["id"]
        batch["status"] = "expired" if b.expire else "completed"
        batch["request_counts"] = {"total": len(lines), "completed": len(output), "failed": len(errors)}


def _misshapen(row: dict, shape: str) -> str:
    """An output line in one of LINE_SHAPES."""
    if shape == "garbage_line":
        return '{"id": "batch_req_0", "custom_id": <html>cut off\n'
    response = row["response"]
    if shape == "no_choices":
        response["body"]["choices"] = []
    elif shape == "null_content":
        response["body"]["choices"][0]["message"]["content"] = None
    elif shape == "status_500":
        response.update(status_code=500,
                        body={"error": {"message": "the upstream model failed", "type": "server_error"}})
    return json.dumps(row) + "\n"
