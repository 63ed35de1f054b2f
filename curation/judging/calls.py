"""Planning judge calls: every (pair, principle, shown order) a judge must answer, each with an id
that hashes everything that determines its answer, so the id is also the cache key."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Iterator

import pyarrow as pa

from prefcurate.core.config import JudgeConfig
from prefcurate.core.hashing import content_hash
from prefcurate.core.store import Store
from prefcurate.curation.backends import ChatRequest
from prefcurate.curation.judging.constitution import Constitution, Principle
from prefcurate.curation.judging.panel import PanelJudge
from prefcurate.curation.judging.prompt import TEMPLATE_VERSION, judge_messages, response_format_for
from prefcurate.curation.judging.verdicts import VERDICTS

CALL_FAILED = "call_failed"  # invalid_reason prefix of a call that got no answer: asked again next run


@dataclass(frozen=True)
class PlannedCall:
    judgment_id: str
    pair_id: str
    judge: PanelJudge
    principle: Principle
    shown_order: str
    output_format: str  # as planned: the id hashes it, so the request must use the same one
    prompt: str
    first: str  # the response shown first
    second: str
    seed: int

    @property
    def key(self) -> str:  # what every call kind is stored, journaled and cached by
        return self.judgment_id

    @cached_property
    def request(self) -> ChatRequest:
        """Built when asked: a re-run plans every call but sends only what is not stored."""
        return ChatRequest(
            key=self.judgment_id,
            messages=judge_messages(self.principle, self.prompt, self.first, self.second, self.output_format),
            max_tokens=self.judge.config.max_new_tokens, temperature=self.judge.config.temperature,
            seed=self.seed, want_logprobs=True,
            choices=VERDICTS if self.output_format == "choices" else None,
            response_format=response_format_for(self.output_format))

    @property
    def request_chars(self) -> int:
        return sum(len(message["content"]) for message in self.request.messages)


def plan_calls(pairs: list[tuple], constitution: Constitution, judge: PanelJudge,
               config: JudgeConfig) -> list[PlannedCall]:
    """pairs: (pair_id, prompt, text_a, text_b). Every call one judge needs for them."""
    planned = []
    sampling = {**judge.sampling, "seed": config.seed}
    for pair_key, prompt, text_a, text_b in pairs:
        for principle in constitution.select(pair_key, config.principle_sampling, config.principles_per_pair,
                                             config.seed):
            for order in ("ab", "ba"):
                first, second = (text_a, text_b) if order == "ab" else (text_b, text_a)
                judgment_id = content_hash(
                    "judgment", judge.identity, TEMPLATE_VERSION, judge.output_format, constitution.version,
                    principle.id, principle.text, order, prompt, first, second, sampling)
                planned.append(PlannedCall(judgment_id, pair_key, judge, principle, order, judge.output_format,
                                           prompt, first, second, config.seed))
    return planned


_ALL_PAIRS = "SELECT pair_id, prompt, text_a, text_b FROM pair_texts"
# labelled by an imported pair, or by an imported dataset's ratings: judged only in a seeded sample
_IMPORTED_SAMPLED = """
    WITH imported AS (
        SELECT pair_id FROM reference_labels
        UNION
        SELECT pair_id FROM score_votes WHERE rater_kind = 'import'
    )
    SELECT {columns} FROM {source}
    WHERE pair_id NOT IN (SELECT pair_id FROM imported)
       OR pair_id IN (SELECT pair_id FROM imported ORDER BY md5('judged-imported:' || pair_id) LIMIT $n)"""


def _pairs_query(max_imported: int | None, ordered: bool = True) -> tuple[str, dict]:
    """ordered: by pair_id. Sorting pairs with their texts is what the pages must not do: at 10M
    pairs (~9 GB of texts) the sort and the joins before it ran out of store.memory_limit (2GB)."""
    if max_imported is None:
        query, params = _ALL_PAIRS, {}
    else:
        query, params = _IMPORTED_SAMPLED.format(columns="pair_id, prompt, text_a, text_b", source="pair_texts"), \
            {"n": max_imported}
    return (query + " ORDER BY pair_id" if ordered else query), params


def judged_pair_ids(max_imported: int | None) -> tuple[str, dict]:
    """(SQL, parameters): the ids of the pairs pairs_to_judge gives, for a query to select from."""
    if max_imported is None:
        return "SELECT pair_id FROM pairs", {}
    return _IMPORTED_SAMPLED.format(columns="pair_id", source="pairs"), {"n": max_imported}


def count_judged_pairs(store: Store, max_imported: int | None) -> int:
    """How many pairs pairs_to_judge gives, counted without reading their texts."""
    query, params = judged_pair_ids(max_imported)
    return store.scalar(f"SELECT count(*) FROM ({query})", params or None)


def pairs_to_judge(store: Store, max_imported: int | None = None) -> list[tuple]:
    """Every pair, except imported pairs (reference-labelled, or labelled by imported ratings) beyond
    a seeded sample of max_imported."""
    return store.con.execute(*_pairs_query(max_imported)).fetchall()


def pair_pages(store: Store, max_imported: int | None, page_pairs: int) -> Iterator[list[tuple]]:
    """pairs_to_judge a page of page_pairs at a time (judge.page_pairs), streamed by one query on a
    cursor of its own (the store's connection stays free for other queries between pages), so that
    the texts of millions of pairs are never in memory at once. In the order the joins give them, not
    sorted: every pair comes once, and the calls are the same in any order, but a sort would hold
    (or spill) every pair's texts before the first page."""
    cursor = store.con.cursor()
    try:
        if max_imported is not None and _few_judged_pairs(cursor, max_imported):
            query, params = _JUDGED_PAIR_TEXTS, {}
        else:
            query, params = _pairs_query(max_imported, ordered=False)
        reader = cursor.sql(query, params=params or None).to_arrow_reader(page_pairs)
        for batch in reader:
            columns = [batch.column(name).to_pylist() for name in ("pair_id", "prompt", "text_a", "text_b")]
            yield list(zip(*columns))
    finally:
        cursor.close()


# Past this many pairs to judge, their ids are not worth staging (below).
STAGED_PAIRS_MAX = 1_000_000
_JUDGED_PAIR_TEXTS = ("SELECT pair_id, prompt, text_a, text_b FROM pair_texts "
                      "WHERE pair_id IN (SELECT pair_id FROM _judged_pairs)")


def _few_judged_pairs(cursor, max_imported: int) -> bool:
    """Stage the ids of the pairs to judge in a temp table of the cursor's, and say whether they
    are few enough to join their texts from it. DuckDB does not push the sample's filter below the
    texts' joins: on a store of 10M imported pairs the filtered query joined every pair's texts to
    keep the 20,000 of a sample (80 s); the ids first, then their texts, took 16 s. Many ids (most
    pairs not imported) stream better through that filter than through a join on the ids."""
    ids, params = judged_pair_ids(max_imported)
    cursor.execute(f"CREATE OR REPLACE TEMP TABLE _judged_pairs AS {ids}", params)
    if cursor.execute("SELECT count(*) FROM _judged_pairs").fetchall()[0][0] <= STAGED_PAIRS_MAX:
        return True
    cursor.execute("DROP TABLE _judged_pairs")
    return False


def answered_among(store: Store, keys: list[str]) -> set[str]:
    """Those of these call keys with a stored answer (as answered_ids counts them), looked up
    without reading every stored id."""
    if not keys:
        return set()
    store.con.register("_call_keys", pa.table({"key": pa.array(keys, pa.string())}))
    try:
        return {row[0] for row in store.con.execute(
            f"SELECT key FROM ({_ANSWERED}) WHERE key IN (SELECT key FROM _call_keys)",
            {"failed": f"{CALL_FAILED}%"}).fetchall()}
    finally:
        store.con.unregister("_call_keys")


# Calls with a stored answer (valid or unreadable), pairwise or rating and ranking; transport
# failures (CALL_FAILED) are asked again.
_ANSWERED = ("SELECT judgment_id AS key FROM judgments WHERE coalesce(invalid_reason, '') NOT LIKE $failed "
             "UNION ALL SELECT call_id FROM score_calls WHERE coalesce(invalid_reason, '') NOT LIKE $failed")


def answered_ids(store: Store) -> set[str]:
    """Every call with a stored answer (_ANSWERED)."""
    return {row[0] for row in store.con.execute(_ANSWERED, {"failed": f"{CALL_FAILED}%"}).fetchall()}
