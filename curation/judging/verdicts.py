"""Reading a judge's answer: its verdict (A, B or tie, as shown), the confidence it states, and the
probabilities at the token that carries the verdict. Tolerant of dress (markup, labels, fenced JSON),
strict about ambiguity (an answer that names two verdicts is unreadable) and about completeness: an
answer the server calls complete must parse under the requested format; only an answer the server
cut at the token limit may be read from what arrived (and the judgment says so: cut_answer)."""

from __future__ import annotations

import json
import math
import re

_WORD_TO_VERDICT = {"a": "A", "b": "B", "tie": "tie", "tied": "tie", "equal": "tie", "c": "tie"}
_LABEL = r"(?:final\s+)?(?:verdict|answer|winner|choice|decision|preferred(?:\s+response)?|better(?:\s+response)?)"
# The whole first line is the verdict, perhaps dressed: "A", "**B**", "Verdict: tie", "[[A]]", "Response B."
_FIRST_LINE = re.compile(
    rf"^\W*(?:{_LABEL}\s*(?:is)?\s*[:=\-]?\s*)?\W*(?:response\s+|output\s+|assistant\s+)?(a|b|tie|tied|equal)\W*$",
    re.IGNORECASE,
)
# The verdict leads the first line and is clearly delimited: "A - it is clearer", "B: more accurate", "A because..."
_LEADING = re.compile(
    r"^\W*(?:response\s+)?(A|B|Tie|tie)(?:\s*[.:)\]\-\u2013\u2014,]|\s+(?:is\s+better|is\s+preferred|because|wins)\b)")
_BRACKETED = re.compile(r"\[\[\s*(A|B|C|tie)\s*\]\]", re.IGNORECASE)
_SENTENCE = re.compile(r"\b(?:response|output|assistant)\s+(A|B)\s+(?:is|was)\s+(?:better|preferred|superior|stronger)\b",
                       re.IGNORECASE)
_JSON_KEYS = ("verdict", "winner", "choice", "preference", "answer")


_CODE_FENCE = re.compile(r"^```(?:json)?\s*(.*?)\s*```$", re.DOTALL)
_JSON_VERDICT = re.compile(r'"(?:verdict|winner|choice|preference|answer)"\s*:\s*"\s*(A|B|tie)\s*"', re.IGNORECASE)
_JSON_CONFIDENCE = re.compile(r'"confidence"\s*:\s*"?([0-9]*\.?[0-9]+)')
_TEXT_CONFIDENCE = re.compile(r"\bconfidence\s*[:=]?\s*([0-9]*\.?[0-9]+)\s*(%?)", re.IGNORECASE)


def _json_payload(stripped: str) -> tuple[dict | None, str]:
    fenced = _CODE_FENCE.match(stripped)
    body = fenced.group(1) if fenced else stripped
    if not body.startswith("{"):
        return None, body
    try:
        payload = json.loads(body)
    except json.JSONDecodeError:
        return None, body
    return (payload if isinstance(payload, dict) else None), body


JSON_FORMATS = ("json_schema", "json_object")
# finish_reason values that say the answer ended where the model meant it to (None: not reported;
# "choice": the local backend's closed answer, the most likely of the verdict choices)
COMPLETE = (None, "stop", "eos", "end_turn", "stop_sequence", "choice")
CUT = "length"


def answer_completeness(finish_reason: str | None) -> tuple[bool, str | None]:
    """(cut at the token limit, reason it cannot be read at all) from the endpoint's finish_reason."""
    if finish_reason == CUT:
        return True, None
    if finish_reason in COMPLETE:
        return False, None
    return False, f"the endpoint ended the answer with finish_reason {finish_reason!r}"


def parse_verdict(text: str | None, output_format: str = "text", cut: bool = False) -> tuple[str | None, str | None]:
    """Return (verdict, None) with verdict in {'A', 'B', 'tie'}, or (None, reason it could not be read).

    `cut`: the server stopped the answer at the token limit, so a JSON answer may be unfinished and
    its verdict is read from the complete `"verdict": "X"` field it holds. Otherwise JSON must parse:
    a complete answer that does not is invalid, never a verdict."""
    if text is None:
        return None, "no content"
    stripped = text.strip()
    if not stripped:
        return None, "empty response"

    payload, body = _json_payload(stripped)
    if output_format in JSON_FORMATS and payload is None and not body.startswith("{"):
        return None, f"not JSON, under the requested {output_format} format: {stripped[:80]!r}"
    if payload is not None:
        # JSON answers are held to the schema: "C", "equal" or "tied" are not verdicts there.
        for key in _JSON_KEYS:
            value = payload.get(key)
            if value is None:
                continue
            if isinstance(value, str) and value.strip().lower() in _VERDICT_TOKENS:
                return _VERDICT_TOKENS[value.strip().lower()], None
            return None, f"JSON {key} {value!r} is not one of A, B, tie"
        return None, f"JSON without a verdict field ({', '.join(_JSON_KEYS)})"
    if body.startswith("{"):
        if not cut:
            return None, f"malformed JSON in an answer the server calls complete: {body[:80]!r}"
        # Cut at the token limit: a complete "verdict": "X" pair still says what the judge meant.
        named = {_WORD_TO_VERDICT[m.lower()] for m in _JSON_VERDICT.findall(body)}
        if len(named) == 1:
            return named.pop(), None
        return None, f"cut JSON without a readable verdict: {body[:80]!r}"

    # Every place a verdict can stand must agree: "A ... [[B]]" is ambiguous, not A.
    first_line = stripped.splitlines()[0].strip()
    match = _FIRST_LINE.match(first_line) or _LEADING.match(first_line)
    found = {_WORD_TO_VERDICT[match.group(1).lower()]} if match else set()
    found |= {_WORD_TO_VERDICT[m.lower()] for m in _BRACKETED.findall(stripped)}
    found |= {m.upper() for m in _SENTENCE.findall(stripped)}
    if len(found) == 1:
        return found.pop(), None
    if len(found) > 1:
        return None, f"ambiguous: names {sorted(found)}"
    return None, f"no verdict found in: {stripped[:80]!r}"


def parse_self_confidence(text: str | None, cut: bool = False) -> float | None:
    """The confidence a judge states about its verdict, as a probability in [0, 1], or None.

    Reads `"confidence": 0.8` in JSON and `Confidence: 80` / `Confidence: 80%` / `Confidence: 0.8`
    in text; a number above 1 is a percentage. Out-of-range values are not a confidence. In a `cut`
    answer a number the cut may have shortened ("0." of 0.85, "8" of 85) is not one either."""
    if not text:
        return None
    match = _JSON_CONFIDENCE.search(text) or _TEXT_CONFIDENCE.search(text)
    if not match:
        return None
    after = text[match.end(1):match.end(1) + 1]
    if cut and (not after or after in ".0123456789"):
        return None
    value = float(match.group(1))
    if (len(match.groups()) > 1 and match.group(2)) or value > 1:
        value /= 100
    return value if 0 <= value <= 1 else None


VERDICTS = ("A", "B", "tie")
_VERDICT_TOKENS = {"a": "A", "b": "B", "tie": "tie"}
_TOKEN_DRESSING = " \t\n\"'*[]()."
# What may stand before the verdict token: nothing but markup ("**", "[["), a label ("Verdict: "),
# or, in JSON, the opening of the verdict field.
_TEXT_LEAD = re.compile(r"^[\s*#\[(\"']*(?:(?:final\s+)?(?:verdict|answer)\s*[:=]?\s*)?(?:response\s+)?[\s*\[(\"']*$",
                        re.IGNORECASE)
_JSON_LEAD = re.compile(r'"verdict"\s*:\s*"?\s*$')


def _verdict_key(token: str) -> str | None:
    return _VERDICT_TOKENS.get(token.strip(_TOKEN_DRESSING).lower())


SCAN_TOKENS = 48  # the verdict token is looked for among an answer's first tokens


def _verdict_index(token_logprobs: list[tuple[str, dict[str, float]]]) -> int | None:
    prefix = ""
    for index, (token, _alternatives) in enumerate(token_logprobs[:SCAN_TOKENS]):
        core = token.lstrip(_TOKEN_DRESSING)
        lead = prefix + token[:len(token) - len(core)]
        if _verdict_key(token) and (_TEXT_LEAD.match(lead) or _JSON_LEAD.search(lead)):
            return index
        prefix += token
    return None


def verdict_token_logprobs(token_logprobs: list[tuple[str, dict[str, float]]] | None) -> dict[str, float] | None:
    """The alternatives at the token that carries the verdict: the first token of a text answer
    (after markup or a label), or the value of the "verdict" field of a JSON answer."""
    if not token_logprobs:
        return None
    index = _verdict_index(token_logprobs)
    return None if index is None else token_logprobs[index][1]


def verdict_relevant_tokens(token_logprobs: list[tuple[str, dict[str, float]]] | None):
    """What verdict_token_logprobs reads of an answer's tokens: those up to the verdict token, with
    the alternatives of that one alone. A journal keeps this instead of every token's alternatives."""
    if not token_logprobs:
        return token_logprobs
    index = _verdict_index(token_logprobs)
    if index is None:
        return [(token, {}) for token, _ in token_logprobs[:SCAN_TOKENS]]
    return [(token, {}) for token, _ in token_logprobs[:index]] + [token_logprobs[index]]


def verdict_distribution(token_alternatives: dict[str, float] | None) -> dict[str, float] | None:
    """P(A), P(B), P(tie) at the verdict token, normalized over the three; None without mass.

    Tokens are merged by their spelling without whitespace, quotes or markup (" A", "A" and "\"A"
    are one verdict).
    """
    if not token_alternatives:
        return None
    mass = dict.fromkeys(VERDICTS, 0.0)
    for token, logprob in token_alternatives.items():
        key = _verdict_key(token)
        if key:
            mass[key] += math.exp(logprob)
    total = sum(mass.values())
    if total <= 0:
        return None
    return {key: value / total for key, value in mass.items()}


def verdict_confidence(distribution: dict[str, float] | None, verdict: str) -> float | None:
    """P(verdict) under the distribution, or None when the verdict token carried no mass on it
    (the probabilities were read at a token that is not the verdict, so they say nothing)."""
    if not distribution or distribution[verdict] <= 0:
        return None
    return distribution[verdict]


def first_position_logit(distribution: dict[str, float] | None) -> float | None:
    """log P(A) - log P(B) as shown, or None when either is zero."""
    if not distribution or distribution["A"] <= 0 or distribution["B"] <= 0:
        return None
    return math.log(distribution["A"]) - math.log(distribution["B"])
