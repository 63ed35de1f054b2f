"""Chat-completion backends behind one interface (see base.py)."""

from __future__ import annotations

from pathlib import Path

from prefcurate.core.config import BackendConfig
from prefcurate.curation.backends.base import ChatBackend, ChatRequest, ChatResult

__all__ = ["ChatBackend", "ChatRequest", "ChatResult", "backend_identity", "make_backend"]


def backend_identity(config: BackendConfig) -> str:
    """A stable name for the model behind a backend config: part of every cache key."""
    if config.kind != "transformers":  # one model, several ways to ask it: one identity, one cache
        return f"openai:{config.base_url or 'api.openai.com'}:{config.model}"
    return f"transformers:{config.model}"


def make_backend(config: BackendConfig, models_dir: Path):
    """A ChatBackend, or for the batch kinds a batch backend (submit / poll / download)."""
    if config.kind == "openai_batch":
        from prefcurate.curation.backends.openai_batch import OpenAIBatchBackend

        return OpenAIBatchBackend(config)
    if config.kind == "batch_files":
        from prefcurate.curation.backends.batch_files import FileBatchBackend

        return FileBatchBackend(config)
    if config.kind == "openai":
        from prefcurate.curation.backends.openai_compat import OpenAIBackend

        return OpenAIBackend(config)
    from prefcurate.curation.backends.transformers_local import TransformersBackend

    return TransformersBackend(config, models_dir)
