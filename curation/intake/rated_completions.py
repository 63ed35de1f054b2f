"""Import completions that come with ratings (UltraFeedback, distilabel's UltraFeedback task, or a
flat layout) as candidates and their scores: one candidate_scores row per completion and aspect,
rater_kind 'import', rater the dataset (its source, as import-pairs names it), mode 'rating'.

No pairs are made here: `prefcurate pairs` with a strategy from scores (pairs.strategy
best_vs_worst, best_vs_random_lower or all_with_margin) pairs the candidates, and the dataset's
scores then give each pair its reference label (score_votes -> pair_labels.reference_label).

Layouts, recognised per row (or named with `layout`):
- ultrafeedback: `instruction`, `completions: [{response, model, annotations: {aspect: {"Rating": "4",
  "Rationale": ...}}}]`. Ratings are strings; "N/A" leaves the aspect unrated. `overall_score` and
  `fine-grained_score` are not read: the first is a critique's score on another scale (1-10), the
  second the mean of the aspects, which rater_scores takes anyway.
- flat: `prompt`, `completions: [{text | response, ratings: {aspect: number}} | {text, rating: number}]`
  (a single `rating` is the aspect 'overall').
- distilabel: `instruction`, `generations: [str]`, `ratings: [int | null]`, one per generation (its
  UltraFeedback task rates one aspect per run and does not say which: stored as 'overall').
A row is one reject, naming its field, when it has fewer than two completions, a completion without
text, a rating that is not a number or off the scale, or fewer than two rated completions to compare.
"""

from __future__ import annotations

import math
import re
import tempfile
from collections import Counter
from contextlib import ExitStack
from dataclasses import dataclass

import duckdb
import pyarrow as pa

from prefcurate.core.hashing import content_hash, prompt_id
from prefcurate.core.stage_report import StageReport
from prefcurate.core.store import Store
from prefcurate.curation.intake.outcome import RejectTally, check_intake
from prefcurate.curation.intake.preference_pairs import (HELD_ROWS, RowError, imported_candidate_row,
                                                         imported_prompt_row)
from prefcurate.curation.intake.prompts import put_in_pool
from prefcurate.curation.intake.sources import (IngestError, SourceRow, detect_format, is_blank, raw_text,
                                                read_source, row_reject, strip_invisible)

STAGE = "import-ratings"
LAYOUTS = ("ultrafeedback", "flat", "distilabel")
SINGLE_ASPECT = "overall"
NEXT_STEP = ("no pairs yet: run `prefcurate pairs` with pairs.strategy best_vs_worst, best_vs_random_lower or "
             "all_with_margin to pair these candidates from their scores")
_UNRATED = frozenset({"n/a", "na", "none", "null", ""})  # how rated sets say "not rated for this aspect"


@dataclass(frozen=True)
class Scale:
    low: float
    high: float

    @classmethod
    def parse(cls, text: str) -> Scale:
        """`1-5`, `1-10`, `0-1.5`: the ratings' lowest and highest values."""
        match = re.fullmatch(r"\s*(-?\d+(?:\.\d+)?)\s*-\s*(-?\d+(?:\.\d+)?)\s*", text)
        if match is None or float(match[1]) >= float(match[2]):
            raise ValueError(f"scale {text!r}: expected MIN-MAX with MIN < MAX, e.g. 1-5 or 1-10")
        return cls(float(match[1]), float(match[2]))

    def __str__(self) -> str:
        return f"{self.low:g}-{self.high:g}"


@dataclass(frozen=True)
class RatedCompletion:
    text: str
    ratings: dict[str, float | None]  # aspect -> rating; None where the source left it unrated
    model: str | None = None

    @property
    def scores(self) -> dict[str, float]:
        return {aspect: rating for aspect, rating in self.ratings.items() if rating is not None}


@dataclass(frozen=True)
class RatedRow:
    prompt: str
    completions: list[RatedCompletion]
    layout: str

    @property
    def unrated(self) -> int:
        return sum(rating is None for completion in self.completions for rating in completion.ratings.values())


# -- reading one row --------------------------------------------------------------------------------

def _rating(value, field: str, aspect: str, scale: Scale) -> float | None:
    """A stated rating as a number (strings such as "4" too); None when the source marks it unrated."""
    if value is None or isinstance(value, float) and math.isnan(value):  # NaN: how pandas writes a gap
        return None
    if isinstance(value, str):
        if value.strip().lower() in _UNRATED:
            return None
        try:
            number = float(value)
        except ValueError:
            number = math.nan
        if math.isnan(number):
            raise RowError(field, f"rating {value!r} for aspect {aspect!r} is not a number (nor N/A)")
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        number = float(value) if abs(value) < 1e300 else math.inf  # an integer too big for a float is off any scale
    else:
        raise RowError(field, f"rating for aspect {aspect!r} must be a number, got {type(value).__name__}: "
                              f"{raw_text(value, 80)}")
    if not scale.low <= number <= scale.high:
        raise RowError(field, f"rating {number:g} for aspect {aspect!r} is off the scale {scale} (set --scale MIN-MAX)")
    return number


def _prompt(values: dict, *fields: str) -> str:
    """The prompt from the first of `fields` the row fills."""
    for field in fields:
        text = values.get(field)
        if text is None:
            continue
        if not isinstance(text, str):
            raise RowError(field, f"the prompt must be a string, got {type(text).__name__}")
        if is_blank(text):  # zero-width spaces and byte-order marks too
            raise RowError(field, "empty prompt")
        return text
    raise RowError(fields[0], f"missing field; the row has {sorted(values)}")


def _text(item: dict, where: str, *fields: str) -> str:
    for field in fields:
        text = item.get(field)
        if text is None:
            continue
        if not isinstance(text, str):
            raise RowError(f"{where}.{field}", f"the response must be a string, got {type(text).__name__}")
        if is_blank(text):
            raise RowError(f"{where}.{field}", "empty response")
        return text
    raise RowError(f"{where}.{fields[0]}", f"missing field; the completion has {sorted(item)}")


def _completion_items(values: dict, field: str, item_type: type, nullable: bool = False) -> list:
    """The row's list of completions, each of item_type (or None where `nullable`: a generation that failed)."""
    items = values.get(field)
    if items is None:
        raise RowError(field, f"missing field; the row has {sorted(values)}")
    if not isinstance(items, list):
        raise RowError(field, f"expected a list of completions, got {type(items).__name__}")
    present = sum(item is not None for item in items) if nullable else len(items)
    if present < 2:
        plural = "" if present == 1 else "s"
        raise RowError(field, f"{present} completion{plural}: at least 2 are needed to compare")
    for index, item in enumerate(items):
        if not isinstance(item, item_type) and not (nullable and item is None):
            raise RowError(f"{field}[{index}]", f"expected {'an object' if item_type is dict else 'a string'}, "
                                                f"got {type(item).__name__}")
    return items


def _model(value) -> str | None:
    return value if isinstance(value, str) and value.strip() else None


def _ultrafeedback(values: dict, scale: Scale) -> RatedRow:
    prompt = _prompt(values, "instruction", "prompt")
    completions = []
    for index, item in enumerate(_completion_items(values, "completions", dict)):
        where = f"completions[{index}]"
        text = _text(item, where, "response")
        annotations = item.get("annotations") or {}
        if not isinstance(annotations, dict):
            raise RowError(f"{where}.annotations", "expected an object of aspects ({aspect: {Rating, Rationale}})")
        ratings = {}
        for aspect, note in annotations.items():
            if note is None:  # Parquet gives every row every aspect some row has
                continue
            if not isinstance(note, dict):
                raise RowError(f"{where}.annotations.{aspect}",
                               f"expected {{Rating, Rationale}}, got {raw_text(note, 80)}")
            ratings[aspect] = _rating(note.get("Rating"), f"{where}.annotations.{aspect}.Rating", aspect, scale)
        completions.append(RatedCompletion(text, ratings, _model(item.get("model"))))
    return RatedRow(prompt, completions, "ultrafeedback")


def _flat(values: dict, scale: Scale) -> RatedRow:
    prompt = _prompt(values, "prompt", "instruction")
    completions = []
    for index, item in enumerate(_completion_items(values, "completions", dict)):
        where = f"completions[{index}]"
        text = _text(item, where, "text", "response")
        by_aspect, single = item.get("ratings"), item.get("rating")
        if by_aspect is not None and single is not None:
            raise RowError(where, "both `rating` and `ratings`: give one")
        if by_aspect is None:
            ratings = {SINGLE_ASPECT: _rating(single, f"{where}.rating", SINGLE_ASPECT, scale)}
        elif isinstance(by_aspect, dict):
            ratings = {aspect: _rating(value, f"{where}.ratings.{aspect}", aspect, scale)
                       for aspect, value in by_aspect.items()}
        else:
            raise RowError(f"{where}.ratings", f"expected an object of aspect: number, got {raw_text(by_aspect, 80)}")
        completions.append(RatedCompletion(text, ratings, _model(item.get("model"))))
    return RatedRow(prompt, completions, "flat")


def _distilabel(values: dict, scale: Scale) -> RatedRow:
    prompt = _prompt(values, "instruction", "prompt")
    generations = _completion_items(values, "generations", str, nullable=True)
    ratings = values.get("ratings")
    if not isinstance(ratings, list) or len(ratings) != len(generations):
        got = ("no such field" if "ratings" not in values else "null" if ratings is None
               else f"{len(ratings)}" if isinstance(ratings, list) else f"a {type(ratings).__name__}")
        raise RowError("ratings", f"expected a list of {len(generations)} ratings, one per generation; got {got}")
    models = values.get("model_names", values.get("generation_models"))
    models = models if isinstance(models, list) and len(models) == len(generations) else [None] * len(generations)
    completions = []
    for index, (text, rating, model) in enumerate(zip(generations, ratings, models)):
        if text is None:  # distilabel keeps a failed generation's place, with a null rating
            continue
        if is_blank(text):
            raise RowError(f"generations[{index}]", "empty response")
        completions.append(RatedCompletion(
            text, {SINGLE_ASPECT: _rating(rating, f"ratings[{index}]", SINGLE_ASPECT, scale)}, _model(model)))
    return RatedRow(prompt, completions, "distilabel")


_PARSERS = {"ultrafeedback": _ultrafeedback, "flat": _flat, "distilabel": _distilabel}


def detect_layout(values: dict) -> str:
    if values.get("generations") is not None:
        return "distilabel"
    completions = values.get("completions")
    if isinstance(completions, list) and any(isinstance(item, dict) and item.get("annotations") is not None
                                             for item in completions):
        return "ultrafeedback"
    if completions is not None:
        return "flat"
    raise RowError("completions", f"missing field; the row has {sorted(values)}, expected completions (UltraFeedback: "
                                  "instruction + completions with annotations; flat: prompt + completions with "
                                  "ratings) or generations + ratings (distilabel)")


def parse_rated_row(values: dict, layout: str, scale: Scale) -> RatedRow:
    """One source row as a prompt and its rated completions; RowError naming the field when it cannot be."""
    row = _PARSERS[detect_layout(values) if layout == "auto" else layout](values, scale)
    rated = {strip_invisible(completion.text) for completion in row.completions if completion.scores}
    field = "ratings" if row.layout == "distilabel" else "completions"
    if not rated:
        raise RowError(field, f"none of its {len(row.completions)} completions has a rating (all missing or N/A)")
    if len(rated) < 2:
        raise RowError(field, f"only one of its {len(row.completions)} completions has a rating (or the rated ones "
                              "are the same text): nothing to compare")
    return row


# -- the stage --------------------------------------------------------------------------------------

# Rows read before they are committed. Fewer than import-pairs' batch: a rated row holds several
# completions (UltraFeedback's four, ~8 KB of text), and a batch's texts are what the import holds.
BATCH_ROWS = 10_000

@dataclass
class _Read:
    """A source row read and parsed, waiting in the batch for its commit."""
    source_row: int
    row: RatedRow  # the texts and ratings only: the source row itself is not kept


class _SeenInThisRead:
    """Ids this import has met in earlier batches (rows, prompts, candidates), in a DuckDB of its
    own that spills to disk past a small memory limit: a file of any size is read in bounded memory,
    and its counts (distinct prompts, rows repeated in the file) stay exact."""

    TABLES = ("rows", "prompts", "candidates")

    def __init__(self) -> None:
        self._spill = tempfile.TemporaryDirectory(prefix="prefcurate-import-")
        self.con = duckdb.connect(config={"memory_limit": "256MB", "temp_directory": self._spill.name,
                                          "preserve_insertion_order": False, "threads": 1})
        for table in self.TABLES:
            self.con.execute(f"CREATE TABLE {table} (id VARCHAR)")

    def unseen_rows(self, call_ids: list[str]) -> set[str]:
        """Those of call_ids no earlier batch had (the batch's own repeats are already one)."""
        if not call_ids:
            return set()
        self.con.register("_batch_ids", pa.table({"id": pa.array(call_ids, pa.string())}))
        try:
            seen = {row[0] for row in self.con.execute(
                "SELECT id FROM _batch_ids WHERE id IN (SELECT id FROM rows)").fetchall()}
        finally:
            self.con.unregister("_batch_ids")
        return set(call_ids) - seen

    def add(self, table: str, ids) -> None:
        ids = pa.table({"id": pa.array(list(ids), pa.string())})
        if ids.num_rows:
            self.con.execute(f"INSERT INTO {table} SELECT id FROM ids")

    def distinct(self, table: str) -> int:
        return self.con.execute(f"SELECT count(DISTINCT id) FROM {table}").fetchone()[0]

    def close(self) -> None:
        self.con.close()
        self._spill.cleanup()


class _Totals:
    def __init__(self) -> None:
        self.kept = self.duplicates = self.unrated = self.scores = 0
        self.layouts, self.aspects = Counter(), Counter()
        self.new = {"prompts": 0, "candidates": 0, "candidate_scores": 0, "rejects": 0}
        self.tally = RejectTally()


def import_rated_completions(store: Store, source: str, layout: str = "auto", scale: Scale = Scale(1, 5),
                             split: str = "train", into_pool: bool = False,
                             max_reject_share: float = 0.5) -> StageReport:
    """Import a rated dataset as candidates and scores. Its prompts are not ones generation answers
    unless `into_pool`. The file streams through in batches of BATCH_ROWS, a
    commit each with the store let go between them past HELD_ROWS. Importing it again adds nothing:
    every id is a content hash (the source row's is the scores' call_id). Fails (StageFailed, after
    storing what it read) as outcome.check_intake says: none kept, or more than max_reject_share rejected."""
    if layout != "auto" and layout not in LAYOUTS:
        raise ValueError(f"layout {layout!r}: expected auto or one of {', '.join(LAYOUTS)}")
    fmt = detect_format(source)
    _columns, rows = read_source(source, fmt, split)
    report = StageReport(STAGE, details={"source": source, "format": fmt, "layout": layout, "scale": str(scale)})
    totals, seen, stop = _Totals(), _SeenInThisRead(), None
    batch: dict[str, _Read] = {}
    rejects: list[dict] = []

    def reject(item: SourceRow, field: str | None, reason: str) -> None:
        row = row_reject(source, item, field, reason)
        rejects.append(row)
        totals.tally.add(row)

    try:
        with ExitStack() as letting_go:
            for item in rows:
                report.count_in += 1
                if item.values is None:
                    reject(item, item.field, item.error)
                    stop = item if item.stops else stop
                else:
                    try:
                        parsed = parse_rated_row(item.values, layout, scale)
                    except RowError as error:
                        reject(item, error.field, str(error))
                    else:
                        call_id = content_hash("rated-row", item.values)
                        if call_id in batch:
                            totals.duplicates += 1
                        else:
                            batch[call_id] = _Read(item.row, parsed)
                if report.count_in == HELD_ROWS:  # a long file: let the store go until each commit
                    letting_go.enter_context(store.released())
                if len(batch) + len(rejects) >= BATCH_ROWS:
                    _commit(store, source, scale, into_pool, batch, rejects, totals, seen)
                    batch, rejects = {}, []
            if report.count_in == 0:
                raise IngestError(f"{source}: no rows")
            _commit(store, source, scale, into_pool, batch, rejects, totals, seen)
        prompts, candidates = seen.distinct("prompts"), seen.distinct("candidates")
    finally:
        seen.close()

    report.count_out = totals.kept
    rejected = report.count_in - totals.kept - totals.duplicates
    report.details.update(layouts=dict(totals.layouts), prompts=prompts, candidates=candidates,
                          scores=totals.scores, aspects=dict(totals.aspects), unrated_skipped=totals.unrated,
                          rejected=rejected, duplicates_in_source=totals.duplicates,
                          **{f"new_{'scores' if table == 'candidate_scores' else table}": count
                             for table, count in totals.new.items()}, next=NEXT_STEP)
    check_intake(STAGE, source, report.count_in, totals.kept + totals.duplicates, totals.tally, stop,
                 max_reject_share)
    return report.finish()


def _commit(store: Store, source: str, scale: Scale, into_pool: bool, batch: dict[str, _Read], rejects: list[dict],
            totals: _Totals, seen: _SeenInThisRead) -> None:
    """The batch's rows that no earlier batch had, as prompts, candidates and scores, in one commit."""
    new_rows = seen.unseen_rows(list(batch))
    totals.duplicates += len(batch) - len(new_rows)
    prompts, candidates, scores = {}, {}, []
    for call_id, read in batch.items():
        if call_id not in new_rows:
            continue
        parsed = read.row
        totals.kept += 1
        totals.layouts[parsed.layout] += 1
        totals.unrated += parsed.unrated
        key = prompt_id(parsed.prompt)
        prompts.setdefault(key, imported_prompt_row(key, parsed.prompt, source, read.source_row, into_pool))
        for index, completion in enumerate(parsed.completions):
            candidate = imported_candidate_row(key, completion.text, source,
                                               {"model": completion.model} if completion.model else None)
            candidates.setdefault(candidate["candidate_id"], candidate)
            for aspect, rating in completion.scores.items():
                totals.aspects[aspect] += 1
                scores.append(_score_row(call_id, source, key, candidate["candidate_id"], aspect, index, rating, scale))
    totals.scores += len(scores)
    with store.transaction():
        totals.new["prompts"] += store.insert_new("prompts", store.arrow_rows("prompts", list(prompts.values())))
        if into_pool:
            put_in_pool(store, list(prompts))
        totals.new["candidates"] += store.insert_new("candidates",
                                                     store.arrow_rows("candidates", list(candidates.values())))
        totals.new["candidate_scores"] += store.insert_new("candidate_scores",
                                                           store.arrow_rows("candidate_scores", scores))
        totals.new["rejects"] += store.add_rejects(STAGE, rejects)
    seen.add("rows", new_rows)
    seen.add("prompts", prompts)
    seen.add("candidates", candidates)


def _score_row(call_id: str, source: str, prompt_key: str, candidate_id: str, aspect: str, index: int,
               rating: float, scale: Scale) -> dict:
    # the completion's place too: a row may hold the same text twice, each with its ratings
    score_id = content_hash("candidate-score", call_id, source, candidate_id, aspect, index)
    return {"score_id": score_id, "call_id": call_id, "prompt_id": prompt_key, "candidate_id": candidate_id,
            "rater": source, "rater_kind": "import", "mode": "rating", "aspect": aspect, "score": rating,
            "stated_score": rating, "score_sd": None, "score_probs": None, "scale_min": scale.low,
            "scale_max": scale.high, "shown_position": None, "score_source": "stated"}
