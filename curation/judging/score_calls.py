"""Planning rating and ranking calls: a rating judge scores every candidate alone (one call covering
every aspect), a ranking judge ranks a prompt's candidates in one call and again in the reverse
order. Each call's id hashes everything that determines its answer, so the id is also the cache
key, as for pairwise calls (calls.py)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cached_property

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


def score_targets(store: Store, judged_pair_ids: list[str], only_pairs: list[str] | None = None) -> list[ScoreTarget]:
    """Every prompt with generated candidates, and the candidates of the pairs judged (imported pairs
    only in judge.max_imported_pairs' sample); `only_pairs` narrows to the candidates of those pairs
    (a cascade level asked about some pairs)."""
    rows = store.con.execute("""
        WITH wanted AS (
            SELECT candidate_id FROM candidates
            WHERE generator_key <> 'import' AND $only::VARCHAR[] IS NULL
            UNION
            SELECT unnest([candidate_a, candidate_b]) FROM pairs
            WHERE pair_id IN (SELECT unnest(coalesce($only::VARCHAR[], $judged::VARCHAR[])))
        )
        SELECT c.prompt_id, any_value(p.text), list(struct_pack(id := c.candidate_id, text := c.text)
                                                    ORDER BY c.candidate_id)
        FROM candidates AS c JOIN prompts AS p USING (prompt_id)
        WHERE c.candidate_id IN (SELECT candidate_id FROM wanted)
        GROUP BY c.prompt_id ORDER BY c.prompt_id""", {"only": only_pairs, "judged": judged_pair_ids}).fetchall()
    targets = []
    for prompt_id, prompt, candidates in rows:
        distinct: dict[str, tuple[str, str]] = {}
        for candidate in candidates:  # identical texts are one response (they never pair)
            distinct.setdefault(candidate["text"].strip(), (candidate["id"], candidate["text"]))
        if len(distinct) >= 2:
            targets.append(ScoreTarget(prompt_id, prompt, tuple(sorted(distinct.values()))))
    return targets


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
