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
from collections import Counter
from dataclasses import dataclass

from prefcurate.core.hashing import content_hash, prompt_id
from prefcurate.core.stage_report import StageReport
from prefcurate.core.store import Store
from prefcurate.curation.intake.outcome import check_intake
from prefcurate.curation.intake.preference_pairs import RowError, imported_candidate_row, imported_prompt_row
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

def import_rated_completions(store: Store, source: str, layout: str = "auto", scale: Scale = Scale(1, 5),
                             split: str = "train", into_pool: bool = False,
                             max_reject_share: float = 0.5) -> StageReport:
    """Import a rated dataset as candidates and scores. Its prompts are not ones generation answers
    unless `into_pool`. Importing it again adds nothing: every id is a content hash (the source row's
    is the scores' call_id). Fails (StageFailed, after storing what it read) as outcome.check_intake
    says: none kept, or more than max_reject_share rejected."""
    if layout != "auto" and layout not in LAYOUTS:
        raise ValueError(f"layout {layout!r}: expected auto or one of {', '.join(LAYOUTS)}")
    fmt = detect_format(source)
    _columns, rows = read_source(source, fmt, split)
    report = StageReport(STAGE, details={"source": source, "format": fmt, "layout": layout, "scale": str(scale)})
    prompts, candidates, scores, rejects = {}, {}, {}, []
    layouts, aspects = Counter(), Counter()
    rows_seen: set[str] = set()
    unrated = duplicates = 0
    stop = None

    def reject(item: SourceRow, field: str | None, reason: str) -> None:
        rejects.append(row_reject(source, item, field, reason))

    for item in rows:
        report.count_in += 1
        if item.values is None:
            reject(item, item.field, item.error)
            stop = item if item.stops else stop
            continue
        try:
            parsed = parse_rated_row(item.values, layout, scale)
        except RowError as error:
            reject(item, error.field, str(error))
            continue
        call_id = content_hash("rated-row", item.values)  # the row's content: the same row twice is one
        if call_id in rows_seen:
            duplicates += 1
            continue
        rows_seen.add(call_id)
        layouts[parsed.layout] += 1
        unrated += parsed.unrated
        key = prompt_id(parsed.prompt)
        prompts.setdefault(key, imported_prompt_row(key, parsed.prompt, source, item.row, into_pool))
        for index, completion in enumerate(parsed.completions):
            candidate = imported_candidate_row(key, completion.text, source,
                                               {"model": completion.model} if completion.model else None)
            candidates.setdefault(candidate["candidate_id"], candidate)
            for aspect, rating in completion.scores.items():
                aspects[aspect] += 1
                # the completion's place too: a row may hold the same text twice, each with its ratings
                score_id = content_hash("candidate-score", call_id, source, candidate["candidate_id"], aspect, index)
                scores[score_id] = {
                    "score_id": score_id, "call_id": call_id, "prompt_id": key,
                    "candidate_id": candidate["candidate_id"], "rater": source, "rater_kind": "import",
                    "mode": "rating", "aspect": aspect, "score": rating,
                    "stated_score": rating, "score_sd": None, "score_probs": None, "scale_min": scale.low,
                    "scale_max": scale.high, "shown_position": None, "score_source": "stated"}

    if report.count_in == 0:
        raise IngestError(f"{source}: no rows")
    with store.transaction():
        new_prompts = store.insert_new("prompts", store.arrow_rows("prompts", list(prompts.values())))
        if into_pool:
            put_in_pool(store, list(prompts))
        new_candidates = store.insert_new("candidates", store.arrow_rows("candidates", list(candidates.values())))
        new_scores = store.insert_new("candidate_scores", store.arrow_rows("candidate_scores", list(scores.values())))
        new_rejects = store.add_rejects(STAGE, rejects)
    report.count_out = len(rows_seen)
    report.details.update(layouts=dict(layouts), prompts=len(prompts), candidates=len(candidates),
                          scores=len(scores), aspects=dict(aspects), unrated_skipped=unrated, rejected=len(rejects),
                          duplicates_in_source=duplicates, new_prompts=new_prompts, new_candidates=new_candidates,
                          new_scores=new_scores, new_rejects=new_rejects, next=NEXT_STEP)
    check_intake(STAGE, source, report.count_in, len(rows_seen) + duplicates, rejects, stop, max_reject_share)
    return report.finish()
