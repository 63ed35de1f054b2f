"""Batches as files, for offline runners (vLLM's `run_batch`, a cluster job): backend.kind
batch_files writes each batch's requests to `<batch_dir>/<chunk>-<n>.requests.jsonl` (the OpenAI Batch
input format; <chunk>-<n> for its n-th submission) and reads the runner's answers from
`<chunk>-<n>.results.jsonl` (the Batch output format, which
`vllm run_batch -i X.requests.jsonl -o X.results.jsonl` writes). A results file is read once
it exists, so write it under another name and rename it when done; lines missing from it are
asked again in a later batch. The calls and their ids are the online backend's.
"""

from __future__ import annotations

import os
from pathlib import Path

from prefcurate.core.config import BackendConfig
from prefcurate.curation.backends import backend_identity
from prefcurate.curation.backends.openai_batch import BatchState, OpenAIBatchBackend

PREFIX = "file:"


class FileBatchBackend(OpenAIBatchBackend):
    def __init__(self, config: BackendConfig):  # noqa: super().__init__ would open an HTTP client
        self.config = config
        self.identity = backend_identity(config)
        self.folder = Path(config.batch_dir)
        self.folder.mkdir(parents=True, exist_ok=True)

    def _paths(self, name: str) -> tuple[Path, Path]:
        return self.folder / f"{name}.requests.jsonl", self.folder / f"{name}.results.jsonl"

    def find_submitted(self, chunk: str, known: set[str]) -> BatchState | None:
        for requests in sorted(self.folder.glob(f"{chunk}-*.requests.jsonl")):
            batch_id = PREFIX + requests.name.removesuffix(".requests.jsonl")
            if batch_id not in known:
                return self.poll(batch_id)
        return None

    def submit(self, chunk: str, lines: list[bytes]) -> tuple[BatchState, str]:
        """Each submission gets files of its own (<chunk>-<n>): a retry of the same calls is a new batch."""
        name = f"{chunk}-{len(list(self.folder.glob(f'{chunk}-*.requests.jsonl'))) + 1}"
        requests, _ = self._paths(name)
        partial = requests.with_suffix(".partial")
        partial.write_bytes(b"".join(lines))
        os.replace(partial, requests)  # whole or absent: a runner never reads half a file
        return self.poll(PREFIX + name), str(requests)

    def poll(self, batch_id: str) -> BatchState:
        _, results = self._paths(batch_id.removeprefix(PREFIX))
        done = results.is_file()
        return BatchState(batch_id, "completed" if done else "in_progress", str(results) if done else None, None)

    def _read_file(self, file_id: str) -> list[str]:
        return Path(file_id).read_text().splitlines()

    def close(self) -> None:
        pass
