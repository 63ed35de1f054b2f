"""Planning rating and ranking calls: a rating judge scores every candidate alone (one call covering
every aspect), a ranking judge ranks a prompt's candidates in one call and again in the reverse
order. Each call's id hashes everything that determines its answer, so the id is also the cache
key, as for pairwise calls (calls.py)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cached_property
from typing import Iterator

from prefcurate.core.config import JudgeConfig
from prefcurate.core.hashing import content_hash
from prefcurate.core.store import Store
from prefcurate.curation.backends import ChatRequest
from prefcurate.curation.judging.constitution import Constitution, Principle
from prefcurate.curation.judging.panel import PanelJudge
from prefcurate.curation.judging.score_prompt import (
    RANKING_TEMPLATE_VERSION,
    RATING_TEMPLATE_VERSION,
    ranking_labels,
    ranking_messages,
    ranking_schema,
    rating_messages,
    rating_schema,
)

OVERALL = Principle(id="overall", text="The response's overall quality on the aspects.", axis="overall")


@dataclass(frozen=True)
class ScoreTarget:
    """A prompt and the candidates score judges see (distinct texts, in candidate id order)."""

    prompt_id: str
    prompt: str
    candidates: tuple[tuple[str, str], ...]  # (candidate_id, text)


@dataclass(frozen=True)
class ScoreCall:
    """One rating call (one candidate) or ranking call (a prompt's candidates, in one order)."""

    key: str  # score_calls.call_id
    prompt_id: str
    judge: PanelJudge
    mode: str  # rating / ranking
    shown: tuple[tuple[str, str], ...]  # (candidate_id, text) in the order shown
    shown_order: str  # single / forward / reversed
    aspects: tuple[Principle, ...]
    output_format: str
    prompt: str
    seed: int
    scale: tuple[int, int]  # rating: (low, high)
    template_version: str

    @property
    def labels(self) -> list[str]:
        return ranking_labels(len(self.shown))

    @cached_property
    def request(self) -> ChatRequest:
        low, high = self.scale
        if self.mode == "rating":
            messages = rating_messages(list(self.aspects), self.prompt, self.shown[0][1], self.output_format, low, high)
            schema = rating_schema(list(self.aspects), low, high)
            choices = tuple(str(point) for point in range(low, high + 1)) if self.output_format == "choices" else None
        else:
            messages = ranking_messages(list(self.aspects), self.prompt, [text for _, text in self.shown],
                                        self.output_format)
            schema, choices = ranking_schema(self.labels), None
        response_format = {"json_schema": schema, "json_object": {"type": "json_object"}}.get(self.output_format)
        return ChatRequest(key=self.key, messages=messages, max_tokens=self.judge.config.max_new_tokens,
                           temperature=self.judge.config.temperature, seed=self.seed, want_logprobs=True,
                           choices=choices, response_format=response_format)

    @property
    def request_chars(self) -> int:
        return sum(len(message["content"]) for message in self.request.messages)


# The candidates score judges see, a row each, grouped into a ScoreTarget per prompt as they come.
_TARGET_CANDIDATES = """
    WITH wanted AS (
        SELECT candidate_id FROM candidates
        WHERE generator_key <> 'import' AND {every_prompt}
        UNION
        SELECT unnest([candidate_a, candidate_b]) FROM pairs WHERE pair_id IN ({pairs})
    )
    SELECT c.prompt_id, p.text, c.candidate_id, c.text
    FROM candidates AS c JOIN prompts AS p USING (prompt_id)
    WHERE c.candidate_id IN (SELECT candidate_id FROM wanted)
    ORDER BY c.prompt_id, c.candidate_id"""


def score_targets(store: Store, judged_pair_ids: list[str], only_pairs: list[str] | None = None) -> list[ScoreTarget]:
    """Every prompt with generated candidates, and the candidates of the pairs judged (imported pairs
    only in judge.max_imported_pairs' sample); `only_pairs` narrows to the candidates of those pairs
    (a cascade level asked about some pairs)."""
    query = _TARGET_CANDIDATES.format(every_prompt=str(only_pairs is None).upper(),
                                      pairs="SELECT unnest($pairs::VARCHAR[])")
    rows = store.con.execute(query, {"pairs": judged_pair_ids if only_pairs is None else only_pairs}).fetchall()
    targets, last = _grouped(iter(rows), None)
    return targets + _finished(last)


def score_target_pages(store: Store, judged_pairs: tuple[str, dict], page_prompts: int) -> Iterator[list[ScoreTarget]]:
    """score_targets over every prompt with generated candidates and the pairs `judged_pairs` selects
    (calls.judged_pair_ids), about page_prompts prompts a page, streamed by one query on a cursor of
    its own: the candidates' texts of millions of prompts are never in memory at once."""
    pairs, params = judged_pairs
    cursor = store.con.cursor()
    try:
        reader = cursor.sql(_TARGET_CANDIDATES.format(every_prompt="TRUE", pairs=pairs),
                            params=params or None).to_arrow_reader(page_prompts * 4)
        last = None
        for batch in reader:
            targets, last = _grouped(zip(*(column.to_pylist() for column in batch.columns)), last)
            if targets:
                yield targets
        if final := _finished(last):
            yield final
    finally:
        cursor.close()


def _grouped(rows: Iterator[tuple], last: _Gathering | None) -> tuple[list[ScoreTarget], _Gathering | None]:
    """(the targets of the prompts these rows finish, the prompt they leave open). Rows come in
    prompt order; a prompt's rows may run on into the next batch (`last`)."""
    targets = []
    for prompt_id, prompt, candidate_id, text in rows:
        if last is None or last.prompt_id != prompt_id:
            if last is not None and (target := last.target()) is not None:
                targets.append(target)
            last = _Gathering(prompt_id, prompt, {})
        last.distinct.setdefault(text.strip(), (candidate_id, text))  # identical texts are one response
    return targets, last


def _finished(last: _Gathering | None) -> list[ScoreTarget]:
    target = last.target() if last is not None else None
    return [target] if target is not None else []


@dataclass
class _Gathering:
    prompt_id: str
    prompt: str
    distinct: dict[str, tuple[str, str]]

    def target(self) -> ScoreTarget | None:
        """Two distinct responses or more to score; None with fewer (they never pair)."""
        if len(self.distinct) < 2:
            return None
        return ScoreTarget(self.prompt_id, self.prompt, tuple(sorted(self.distinct.values())))


def plan_score_calls(targets: list[ScoreTarget], constitution: Constitution, judge: PanelJudge,
                     config: JudgeConfig) -> list[ScoreCall]:
    """Every call one rating or ranking judge needs for the targets."""
    mode = judge.config.mode
    aspects = (OVERALL,) if judge.output_format == "choices" else tuple(constitution.principles)
    scale = (config.rating.scale_min, config.rating.scale_max)
    sampling = {**judge.sampling, "seed": config.seed}
    template = RATING_TEMPLATE_VERSION if mode == "rating" else RANKING_TEMPLATE_VERSION
    planned = []

    def call(target: ScoreTarget, shown: tuple, order: str) -> ScoreCall:
        key = content_hash("score-call", mode, judge.identity, template, judge.output_format, constitution.version,
                           [(a.id, a.text) for a in aspects], scale if mode == "rating" else None, order,
                           target.prompt, list(shown), sampling)
        return ScoreCall(key, target.prompt_id, judge, mode, shown, order, aspects, judge.output_format,
                         target.prompt, config.seed, scale, template)

    for target in targets:
        if mode == "rating":
            planned.extend(call(target, (candidate,), "single") for candidate in target.candidates)
            continue
        shown = _ranked_sample(target, config.ranking.max_candidates, config.seed)
        planned.append(call(target, shown, "forward"))
        if config.ranking.both_orders:
            planned.append(call(target, tuple(reversed(shown)), "reversed"))
    return planned


def _ranked_sample(target: ScoreTarget, k: int, seed: int) -> tuple[tuple[str, str], ...]:
    """The candidates a ranking shows, in a seeded order (not candidate id order, which would put
    the same generator first every time); a prompt with more than k shows a seeded sample of k."""
    def draw(candidate: tuple[str, str]) -> str:
        return hashlib.sha256(f"{seed}:{target.prompt_id}:{candidate[0]}".encode()).hexdigest()
    return tuple(sorted(target.candidates, key=draw)[:k])
