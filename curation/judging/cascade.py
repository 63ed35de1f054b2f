"""A judge cascade with an agreement target (judge.cascade), in the spirit of "Trust or Escalate"
(Jung et al., 2024): a cheap judge first; a stronger judge only for the pairs the cheap one is unsure
of; humans (Argilla) last.

Each level's threshold on the judge's confidence (judge_pair_verdicts) is fitted on gold: pairs with
a label that is not a judge's (a verifier's, annotators', or one imported with the data). Thresholds
are tested from the strictest down (fixed-sequence testing, so trying many does not inflate the
error): a threshold holds while the one-sided Clopper-Pearson lower bound of the agreement with gold,
among the gold pairs at or above it, reaches the target at the stated confidence; the loosest that
holds before the first that fails is the level's. Pairs at or above it are accepted with that
judge's label; the rest go up a level. Where no threshold holds (the gold is noisy, or the judge
is not good enough) or there is too little gold, the level accepts nothing and says why.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

from prefcurate.core.config import CascadeConfig
from prefcurate.core.store import Store

MIN_ACCEPTED = 5  # gold pairs a threshold must keep to be tested at all


@dataclass(frozen=True)
class Fit:
    threshold: float | None
    gold_pairs: int
    gold_accepted: int | None = None
    agreement: float | None = None
    agreement_low: float | None = None
    note: str | None = None


def _log_binomial_tail(k: int, n: int, p: float) -> float:
    """log P(X >= k) for X ~ Binomial(n, p)."""
    if k <= 0:
        return 0.0
    terms = [math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1) + i * math.log(p)
             + (n - i) * math.log1p(-p) for i in range(k, n + 1)]
    top = max(terms)
    return top + math.log(sum(math.exp(term - top) for term in terms))


def agreement_lower_bound(k: int, n: int, confidence: float) -> float:
    """One-sided Clopper-Pearson lower bound on a proportion, k successes in n."""
    if k == 0:
        return 0.0
    alpha, low, high = 1 - confidence, 0.0, k / n
    for _ in range(60):  # P(X >= k | p) grows with p: bisect for the p where it equals alpha
        middle = (low + high) / 2
        if middle <= 0 or _log_binomial_tail(k, n, middle) < math.log(alpha):
            low = middle
        else:
            high = middle
    return low


def fit_threshold(scored: list[tuple[float, bool]], target: float, confidence: float, min_gold: int) -> Fit:
    """scored: (the judge's confidence, whether its label matches gold) per gold pair."""
    n = len(scored)
    if n < min_gold:
        return Fit(None, n, note=f"too little gold: {n} gold pairs with a label from this judge, "
                                 f"judge.cascade.min_gold is {min_gold}")
    chosen, best = None, None
    for threshold in sorted({score for score, _ in scored}, reverse=True):  # strictest first
        kept = [right for score, right in scored if score >= threshold]
        if len(kept) < MIN_ACCEPTED:
            continue
        fit = Fit(threshold, n, len(kept), sum(kept) / len(kept), agreement_lower_bound(sum(kept), len(kept), confidence))
        if best is None or fit.agreement_low > best.agreement_low:
            best = fit
        if fit.agreement_low < target:
            break  # fixed-sequence testing: the first threshold that fails ends the search
        chosen = fit
    if chosen is not None:
        return chosen
    if best is None:
        return Fit(None, n, note=f"too little gold: no threshold keeps {MIN_ACCEPTED} of the {n} gold pairs")
    return Fit(None, n, best.gold_accepted, best.agreement, best.agreement_low,
               note=(f"target not reached: the best threshold ({best.threshold:.3f}) agrees with gold on "
                     f"{best.agreement:.0%} of {best.gold_accepted} pairs, lower bound {best.agreement_low:.3f} < "
                     f"{target} at {confidence:.0%} confidence (noisy gold such as HH-RLHF agrees with itself only "
                     "60-70% of the time)"))


def gold_labels(store: Store) -> dict[str, str]:
    """Labels that are not a judge's: a verifier's, annotators' majority, or imported with the data."""
    return dict(store.con.execute("""
        SELECT pair_id, coalesce(verifier_label, human_label, reference_label) FROM pair_labels
        WHERE coalesce(verifier_label, human_label, reference_label) IS NOT NULL""").fetchall())


def verdicts_of(store: Store, judge: str) -> dict[str, tuple[str, float]]:
    return {row[0]: (row[1], row[2]) for row in store.con.execute(
        "SELECT pair_id, label, confidence FROM judge_pair_verdicts WHERE judge = ? AND label IS NOT NULL",
        [judge]).fetchall()}


def run_cascade(store: Store, config: CascadeConfig, pair_ids: list[str], ask: Callable[[str, list[str]], None],
                humans: bool) -> dict:
    """Judge level by level (ask(judge, pair_ids) asks that judge about those pairs), fit each level's
    threshold, and record every pair's decision. Returns the report's `cascade` section."""
    gold = gold_labels(store)
    open_pairs = list(pair_ids)
    decisions, levels = {}, []
    for level, judge in enumerate(config.levels, start=1):
        ask(judge, sorted(set(open_pairs) | (set(gold) & set(pair_ids))))  # the gold, to fit this level on
        verdicts = verdicts_of(store, judge)
        fit = fit_threshold([(verdicts[pair][1], verdicts[pair][0] == label) for pair, label in gold.items()
                             if pair in verdicts], config.target_agreement, config.confidence, config.min_gold)
        accepted = [pair for pair in open_pairs if pair in verdicts and fit.threshold is not None
                    and verdicts[pair][1] >= fit.threshold]
        for pair in accepted:
            decisions[pair] = {"level": level, "judge": judge, "decision": "accepted", "label": verdicts[pair][0],
                               "confidence": verdicts[pair][1], "threshold": fit.threshold}
        levels.append({"level": level, "judge": judge, **fit.__dict__, "pairs_seen": len(open_pairs),
                       "pairs_accepted": len(accepted)})
        open_pairs = [pair for pair in open_pairs if pair not in decisions]
    for pair in open_pairs:  # a gold pair has its label already: people are asked about the others
        escalate = humans and pair not in gold
        decisions[pair] = {"level": len(config.levels) + 1, "judge": None, "label": None, "confidence": None,
                           "threshold": None, "decision": "to_humans" if escalate else "unlabelled"}
    _record(store, decisions, levels)
    total = max(len(pair_ids), 1)
    left = [decision["decision"] for pair, decision in decisions.items() if decision["decision"] != "accepted"]
    return {"target_agreement": config.target_agreement, "confidence": config.confidence,
            "levels": [{**level, "coverage": round(level["pairs_accepted"] / total, 4)} for level in levels],
            "to_humans": left.count("to_humans"), "unlabelled": left.count("unlabelled")}


def _record(store: Store, decisions: dict, levels: list[dict]) -> None:
    with store.transaction():
        store.con.execute("DELETE FROM cascade_decisions")
        store.con.execute("DELETE FROM cascade_levels")
        if decisions:
            store.upsert("cascade_decisions", store.arrow_rows(
                "cascade_decisions", [{"pair_id": pair, **decision} for pair, decision in decisions.items()]))
        store.upsert("cascade_levels", store.arrow_rows("cascade_levels", [
            {key: level[key] for key in ("level", "judge", "threshold", "gold_pairs", "gold_accepted", "agreement",
                                          "agreement_low", "pairs_seen", "pairs_accepted", "note")}
            for level in levels]))


def clear_cascade(store: Store) -> None:
    """No cascade configured: the judges' labels are the panel's again."""
    if store.scalar("SELECT count(*) FROM cascade_decisions"):
        with store.transaction():
            store.con.execute("DELETE FROM cascade_decisions")
            store.con.execute("DELETE FROM cascade_levels")
