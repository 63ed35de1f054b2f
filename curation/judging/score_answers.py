"""Reading a rating or ranking judge's answer. Tolerant of dress (markup, fenced JSON, "Response B"),
strict about what makes a label: every aspect scored once, on the scale asked for, as a whole
number; every response ranked once. An answer that fails either is invalid with its reason, never a
score. As with pairwise verdicts (verdicts.py), an answer the server calls complete must parse
under the requested format; one cut at the token limit is read only from what arrived complete.

The log-probabilities at the token that carries a score give its distribution over the scale:
the expected score and its spread, not only the number written down.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from functools import cached_property

from prefcurate.curation.judging.verdicts import JSON_FORMATS

_CODE_FENCE = re.compile(r"^```(?:json)?\s*(.*?)\s*```$", re.DOTALL)
_NUMBER = r"(-?\d+(?:\.\d+)?)"


@dataclass(frozen=True)
class Unreadable:
    kind: str  # unparseable / truncated / off_scale / bad_ranking
    reason: str

    @property
    def text(self) -> str:
        return f"{self.kind}: {self.reason}"


def _body(text: str) -> str:
    stripped = text.strip()
    fenced = _CODE_FENCE.match(stripped)
    return fenced.group(1) if fenced else stripped


def _json_object(body: str) -> dict | None:
    if not body.startswith("{"):
        return None
    try:
        payload = json.loads(body)
    except json.JSONDecodeError:
        return None
    return payload if isinstance(payload, dict) else None


# -- ratings -----------------------------------------------------------------------------------------
def _whole_score(aspect: str, value, low: int, high: int) -> int | Unreadable:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return Unreadable("unparseable", f"{aspect}: {value!r} is not a score")
    try:
        number = float(value)
    except ValueError:
        return Unreadable("unparseable", f"{aspect}: {value!r} is not a score")
    if not math.isfinite(number) or number != int(number):
        return Unreadable("off_scale", f"{aspect}: {value!r} is not a whole number from {low} to {high}")
    if not low <= number <= high:
        return Unreadable("off_scale", f"{aspect}: {int(number)} is outside the scale {low}-{high}")
    return int(number)


def _scores_from(found: dict[str, object], aspects: list[str], low: int, high: int) -> dict[str, int] | Unreadable:
    missing = [aspect for aspect in aspects if aspect not in found]
    if missing:
        return Unreadable("unparseable", f"no score for {', '.join(missing)}")
    scores = {}
    for aspect in aspects:
        score = _whole_score(aspect, found[aspect], low, high)
        if isinstance(score, Unreadable):
            return score
        scores[aspect] = score
    return scores


def _aspect_pattern(aspect: str) -> re.Pattern:
    # "helpfulness: 4", "- **helpfulness** = 4/5", '"helpfulness": 4'
    return re.compile(rf"(?:^|[\s\"'*`\-{{,]){re.escape(aspect)}[\"'*`]*\s*[:=]\s*\"?\s*{_NUMBER}",
                      re.IGNORECASE | re.MULTILINE)


def parse_ratings(text: str | None, output_format: str, aspects: list[str], low: int, high: int,
                  cut: bool = False) -> dict[str, int] | Unreadable:
    """{aspect: score} with every aspect scored once on low..high, or why not."""
    if text is None or not text.strip():
        return Unreadable("unparseable", "empty response")
    if output_format == "choices":  # the local backend's closed answer: one overall score
        return _scores_from({aspects[0]: text.strip()}, aspects, low, high)
    body = _body(text)
    payload = _json_object(body)
    if output_format in JSON_FORMATS and payload is None and not body.startswith("{"):
        return Unreadable("unparseable", f"not JSON, under the requested {output_format} format: {body[:80]!r}")
    if payload is not None:
        found = payload.get("scores", payload)
        if not isinstance(found, dict):
            return Unreadable("unparseable", f"JSON scores {found!r} is not an object")
        return _scores_from(found, aspects, low, high)
    if body.startswith("{") and not cut:
        return Unreadable("unparseable", f"malformed JSON in an answer the server calls complete: {body[:80]!r}")

    found: dict[str, object] = {}
    for aspect in aspects:
        matches = [match for match in _aspect_pattern(aspect).finditer(body)]
        # in a cut answer a number at the very end may be shortened ("1" of "10"): not read
        complete = [match for match in matches if not (cut and match.end(1) == len(body.rstrip()) and high >= 10)]
        values = {match.group(1) for match in complete}
        if len(values) > 1:
            return Unreadable("unparseable", f"{aspect}: scored more than once ({', '.join(sorted(values))})")
        if values:
            found[aspect] = values.pop()
    scores = _scores_from(found, aspects, low, high)
    if cut and isinstance(scores, Unreadable) and scores.kind == "unparseable":
        return Unreadable("truncated", f"cut at the token limit before every aspect was scored ({scores.reason})")
    return scores


# -- score distributions from log-probabilities --------------------------------------------------------
_DRESSING = " \t\n\"'*`"


@dataclass(frozen=True)
class ScoreDistribution:
    probs: dict[str, float]  # "1" -> p, over the scale, normalized

    @cached_property
    def expected(self) -> float:
        return sum(int(point) * p for point, p in self.probs.items())

    @cached_property
    def sd(self) -> float:
        mean = self.expected
        return math.sqrt(max(sum(p * (int(point) - mean) ** 2 for point, p in self.probs.items()), 0.0))


def score_distribution(alternatives: dict[str, float] | None, low: int, high: int) -> ScoreDistribution | None:
    """The scale's points' probabilities at one token (alternatives: token -> log-probability);
    None without mass on the scale, or on a scale past 9 (where "1" may begin "10")."""
    if not alternatives or high > 9:
        return None
    points = [str(point) for point in range(low, high + 1)]
    mass = dict.fromkeys(points, 0.0)
    for token, logprob in alternatives.items():
        key = token.strip(_DRESSING)
        if key in mass:
            mass[key] += math.exp(logprob)
    total = sum(mass.values())
    if total <= 0:
        return None
    return ScoreDistribution({point: value / total for point, value in mass.items()})


def aspect_distributions(token_logprobs: list[tuple[str, dict[str, float]]] | None, aspects: list[str],
                         scores: dict[str, int], low: int, high: int) -> dict[str, ScoreDistribution]:
    """Per aspect, the distribution at the token that wrote its score: the first scale digit after
    the aspect's name and a ':' (text) or '": ' (JSON). Only where that token is the stated score,
    so the probabilities are read at the right place."""
    if not token_logprobs:
        return {}
    found, pieces = {}, []
    wanted = {aspect.lower(): aspect for aspect in aspects}
    for token, alternatives in token_logprobs:
        core = token.strip(_DRESSING)
        if core.isdigit():
            lead = "".join(pieces) + token[:len(token) - len(token.lstrip(_DRESSING))]
            # what stands before the number: `aspect` and a ':' or '=' (quotes, markup and spaces around)
            named = lead.rstrip(_DRESSING)
            if named.endswith((":", "=")):
                name = named[:-1].rstrip(_DRESSING).lower()
                for key, aspect in wanted.items():
                    if aspect not in found and _names(name, key) and core == str(scores.get(aspect)):
                        distribution = score_distribution(alternatives, low, high)
                        if distribution is not None:
                            found[aspect] = distribution
        pieces.append(token)
    return found


def score_relevant_tokens(token_logprobs: list[tuple[str, dict[str, float]]] | None):
    """What aspect_distributions reads of an answer's tokens: every token, with the alternatives of
    the digit tokens alone. A journal keeps this instead of every token's alternatives."""
    if not token_logprobs:
        return token_logprobs
    return [(token, alternatives if token.strip(_DRESSING).isdigit() else {}) for token, alternatives in token_logprobs]


def _names(lead: str, aspect: str) -> bool:
    """`lead` ends with the aspect's whole name ("...helpfulness", not "...unhelpfulness")."""
    if not lead.endswith(aspect):
        return False
    before = lead[-len(aspect) - 1] if len(lead) > len(aspect) else " "
    return not (before.isalnum() or before in "-_")


# -- rankings ----------------------------------------------------------------------------------------------
# "C", "**C**", "Response C", "RESPONSE_C" (the block's own name), "[C]"
_LABEL_DRESS = re.compile(r"^\W*(?:response[\s_]*)?\W*([A-Za-z])\W*$", re.IGNORECASE)


def _ranking_from(items: list, labels: list[str]) -> list[str] | Unreadable:
    ranking = []
    for item in items:
        match = _LABEL_DRESS.match(str(item)) if isinstance(item, (str, int)) else None
        if not match:
            return Unreadable("bad_ranking", f"{item!r} does not name a response")
        label = match.group(1).upper()
        if label not in labels:
            return Unreadable("bad_ranking", f"names {label}, not one of the responses ({', '.join(labels)})")
        ranking.append(label)
    repeated = sorted({label for label in ranking if ranking.count(label) > 1})
    if repeated:
        return Unreadable("bad_ranking", f"repeats {', '.join(repeated)}")
    missing = [label for label in labels if label not in ranking]
    if missing:
        return Unreadable("bad_ranking", f"misses {', '.join(missing)}")
    return ranking


def parse_ranking(text: str | None, output_format: str, labels: list[str], cut: bool = False) -> list[str] | Unreadable:
    """The response labels best first, each once, or why not."""
    if text is None or not text.strip():
        return Unreadable("unparseable", "empty response")
    body = _body(text)
    payload = _json_object(body)
    if output_format in JSON_FORMATS and payload is None and not body.startswith("{"):
        return Unreadable("unparseable", f"not JSON, under the requested {output_format} format: {body[:80]!r}")
    if payload is not None:
        items = payload.get("ranking")
        if not isinstance(items, list):
            return Unreadable("unparseable", f"JSON without a ranking list: {body[:80]!r}")
        return _ranking_from(items, labels)
    if body.startswith("{"):
        if cut:
            return Unreadable("truncated", f"cut at the token limit inside the JSON ranking: {body[:80]!r}")
        return Unreadable("unparseable", f"malformed JSON in an answer the server calls complete: {body[:80]!r}")
    line = next((line for line in body.splitlines() if ">" in line), body.splitlines()[0])
    line = re.sub(r"^\W*(?:final\s+)?ranking\s*[:=]\s*", "", line.strip(), flags=re.IGNORECASE)
    items = [item for item in re.split(r"\s*(?:>|,)\s*", line.strip().rstrip(".")) if item]
    ranking = _ranking_from(items, labels)
    if cut and isinstance(ranking, Unreadable):
        return Unreadable("truncated", f"cut at the token limit before the ranking was complete ({ranking.reason})")
    return ranking
