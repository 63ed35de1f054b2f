"""The judge panel as the stage sees it: each member's config, identity and resolved output format,
with its backend open."""

from __future__ import annotations

from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

from prefcurate.core.config import BackendConfig, JudgeConfig, PanelJudgeConfig, judge_name
from prefcurate.core.store import Store
from prefcurate.curation.backends import ChatBackend, backend_identity, make_backend


@dataclass
class PanelJudge:
    """One panel member: its config, its identity, and how it is asked."""

    config: PanelJudgeConfig
    output_format: str  # resolved: json_schema / json_object / text / choices
    backend: ChatBackend | None = None  # None when only planning (estimates)
    format_confirmed: bool = False  # this judge's stored answers already used output_format

    @property
    def name(self) -> str:
        return judge_name(self.config)

    @property
    def identity(self) -> str:
        return "verifier" if self.is_verifier else backend_identity(self.config.backend)

    @property
    def mode(self) -> str:
        """pairwise / rating / ranking; a verifier checks pairs."""
        return "verifier" if self.is_verifier else self.config.mode

    @property
    def is_verifier(self) -> bool:
        return self.config.kind == "verifier"

    @property
    def sampling(self) -> dict:
        return {"max_tokens": self.config.max_new_tokens, "temperature": self.config.temperature}


def resolve_output_format(config: PanelJudgeConfig, history: str | None = None) -> str:
    """auto: closed-answer scoring on local models (a verdict, or one overall score; rankings are
    generated as text); on endpoints json_schema, unless this judge already fell back to text
    (`history`, the format its stored calls used)."""
    if config.output_format != "auto":
        return config.output_format
    if config.backend.kind == "transformers":
        return "text" if config.mode == "ranking" else "choices"
    return history if history in ("text", "json_schema") else "json_schema"


def format_history(store: Store, judge: PanelJudgeConfig) -> str | None:
    if judge.mode == "pairwise":
        query = "SELECT output_format FROM judgments WHERE judge_model = ? AND output_format IS NOT NULL"
    else:
        query = f"SELECT output_format FROM score_calls WHERE judge_model = ? AND mode = '{judge.mode}'"
    row = store.one(query + " ORDER BY created_at DESC LIMIT 1", [backend_identity(judge.backend)])
    return row[0] if row else None


@contextmanager
def open_panel(store: Store, config: JudgeConfig, models_dir: Path,
               open_backend: Callable[[BackendConfig, Path], ChatBackend] = make_backend) -> Iterator[list[PanelJudge]]:
    """The configured panel with its backends open (closed on exit); open_backend makes each one
    (curation/backends/remote.py: on a cluster's workers)."""
    with ExitStack() as backends:
        panel = []
        for member in config.panel:
            if member.kind == "verifier":  # checks, not a model: no backend to open
                panel.append(PanelJudge(member, "verifier"))
                continue
            history = format_history(store, member)
            output_format = resolve_output_format(member, history)
            panel.append(PanelJudge(member, output_format, backends.enter_context(open_backend(member.backend, models_dir)),
                                    format_confirmed=output_format == history))
        yield panel
