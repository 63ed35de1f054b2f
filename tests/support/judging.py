"""Run the judge stage against the suite's server(s) the way the pipeline does, or `prefcurate judge`
as a process."""

from __future__ import annotations

import sys
from pathlib import Path

from prefcurate.core.config import JudgeConfig
from prefcurate.curation.judging.constitution import load_constitution
from prefcurate.curation.judging.judge import judge_pairs
from prefcurate.curation.judging.panel import open_panel
from tests.support.builders import add_candidates, add_pair, add_prompt


def judge_config(*servers, members: list[dict] | None = None, **options) -> JudgeConfig:
    """One panel member per server (or per `members` entry, each naming its server by index)."""
    members = members or [{"server": index} for index in range(len(servers))]
    panel = []
    for member in members:
        member = dict(member)
        server = servers[member.pop("server", 0)]
        backend = {"kind": "openai", "model": "test-model", "base_url": server.base_url, "max_retries": 3,
                   "timeout_s": 5.0, **member.pop("backend", {})}
        panel.append({"backend": backend, **member})
    return JudgeConfig(panel=panel, **options)


def run_judge(store, config: JudgeConfig, constitution=None):
    with open_panel(store, config, Path("unused-models-dir")) as panel:
        return judge_pairs(store, panel, constitution or load_constitution(None), config)


def judge_command(config_path, *args: str) -> list[str]:
    """`prefcurate judge --config config_path ARGS` run with this interpreter."""
    return [sys.executable, "-m", "prefcurate.cli", "judge", "--config", str(config_path), *args]


def add_judgeable_pairs(store, n: int, *, prompt_prefix: str = "Question") -> list[tuple[str, str, str]]:
    """n prompts with one pair each whose responses differ in length: (pair_id, candidate_a, candidate_b)."""
    pairs = []
    for index in range(n):
        prompt = add_prompt(store, f"{prompt_prefix} {index}: explain item {index}.")
        short, long = add_candidates(store, prompt, [f"Short {index}.", f"A longer answer {index} " + "word " * (index % 5 + 1)])
        pairs.append(add_pair(store, prompt, short, long))
    return pairs
