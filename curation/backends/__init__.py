"""Chat-completion backends behind one interface (see base.py)."""

from __future__ import annotations

from pathlib import Path

from prefcurate.config import BackendConfig
from prefcurate.curation.backends.base import ChatBackend, ChatRequest, ChatResult

__all__ = ["ChatBackend", "ChatRequest", "ChatResult", "make_backend"]


def make_backend(config: BackendConfig, models_dir: Path) -> ChatBackend:
    if config.kind == "openai":
        from prefcurate.curation.backends.openai_compat import OpenAIBackend

        return OpenAIBackend(config)
    from prefcurate.curation.backends.transformers_local import TransformersBackend

    return TransformersBackend(config, models_dir)
