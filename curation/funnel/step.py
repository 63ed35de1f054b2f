"""What a curation step is: a name and either a predicate over the working table's columns or a
function that rewrites the table (`_curation_prev` in, `_curation_step` out)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from prefcurate.core.config import CurateConfig
from prefcurate.core.store import Store


@dataclass
class StepOutcome:
    details: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Step:
    name: str
    # Either a predicate over the working table's columns, or a function that rewrites the table.
    predicate: str | None = None
    rewrite: Callable[[Store, CurateConfig], StepOutcome] | None = None


def keep_prompts(store: Store, table: str) -> None:
    """Keep the working rows whose prompt is in `table` (prompt_id)."""
    store.con.execute(f"CREATE OR REPLACE TEMP TABLE _curation_step AS SELECT * FROM _curation_prev "
                      f"WHERE prompt_id IN (SELECT prompt_id FROM {table})")


def surviving_prompt_texts(table: str) -> str:
    """SQL: (prompt_id, prompt_text) of each prompt with a pair left in `table`. The texts sit in
    `_curation_prompt_texts`, once per prompt, not in the working table once per pair."""
    return (f"SELECT prompt_id, prompt_text FROM _curation_prompt_texts "
            f"WHERE prompt_id IN (SELECT prompt_id FROM {table})")
