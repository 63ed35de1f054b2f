"""Whether a retrained reward model replaces the one in charge, decided on evidence.

Both models are scored on the same pairs, so each comparison is a paired bootstrap interval
(rm/stats.py) of the candidate's accuracy minus the incumbent's, at refresh.gate.confidence:
- on-policy gain, on this round's on-policy held-out pairs: the interval's lower bound must clear
  min_on_policy_gain (a gain the data supports, not one its noise allows);
- fixed non-inferiority, on the fixed held-out set: the lower bound may not fall below
  -max_fixed_drop (the new model did not forget the old distribution);
- a teacher's signal: the candidate's mean within-prompt reward std over the round's policy
  responses, over its reward std on the fixed held-out responses (a ratio, so rescaling the rewards
  changes nothing), must be at least min_relative_spread of the incumbent's. An accurate model that
  barely separates the policy's responses teaches slowly (Razin et al., 2025).
Too few pairs to decide is refused as "not enough evidence", with about how many pairs it would take
at the gain seen. Every decision states its figures.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from prefcurate.core.config import PromotionGate
from prefcurate.rm.stats import Interval, paired_difference

_Z = {0.8: 1.2816, 0.9: 1.6449, 0.95: 1.96, 0.99: 2.5758}


@dataclass(frozen=True)
class Decision:
    promote: bool
    reason: str
    figures: dict = field(default_factory=dict)

    @property
    def label(self) -> str:
        return "promoted" if self.promote else "refused"


def pairs_needed(differences: np.ndarray, floor: float, confidence: float) -> int | None:
    """About how many pairs would put the interval's lower bound above `floor`, were the mean and
    spread of the per-pair differences what they are now (None: the gain seen does not clear it)."""
    gain = float(differences.mean()) - floor
    if gain <= 0:
        return None
    spread = float(differences.std(ddof=1)) if len(differences) > 1 else 0.5
    z = _Z.get(round(confidence, 2), 1.96)
    return max(len(differences) + 1, math.ceil((z * max(spread, 1e-9) / gain) ** 2))


def decide(candidate: dict, incumbent: dict, gate: PromotionGate) -> Decision:
    """candidate / incumbent: measurements (refresh/heldout.py measure): per-pair results on both
    held-out sets (`fixed_correct`, `on_policy_correct`) and the `normalized_spread`."""
    for name in ("on_policy", "fixed"):
        pairs = len(candidate.get(f"{name}_correct") or [])
        if pairs < gate.min_heldout_pairs:
            return Decision(False, f"refused: not enough evidence: {pairs} {name.replace('_', '-')} held-out pairs, "
                                   f"fewer than refresh.gate.min_heldout_pairs = {gate.min_heldout_pairs}")
    on_policy = [np.asarray(candidate["on_policy_correct"], float), np.asarray(incumbent["on_policy_correct"], float)]
    fixed = [np.asarray(candidate["fixed_correct"], float), np.asarray(incumbent["fixed_correct"], float)]
    gain = paired_difference(*on_policy, confidence=gate.confidence)
    change = paired_difference(*fixed, confidence=gate.confidence)
    spread_new, spread_old = candidate.get("normalized_spread"), incumbent.get("normalized_spread")
    figures = {"confidence": gate.confidence, "on_policy_gain": gain.as_dict(), "fixed_change": change.as_dict(),
               "normalized_spread": {"candidate": spread_new, "incumbent": spread_old}}
    stated = (f"on-policy accuracy {on_policy[1].mean():.3f} -> {on_policy[0].mean():.3f}, gain {_interval(gain)}; "
              f"fixed {fixed[1].mean():.3f} -> {fixed[0].mean():.3f}, change {_interval(change)}; "
              f"reward spread (within prompt / fixed set) {_number(spread_old)} -> {_number(spread_new)}; "
              f"{gate.confidence:.0%} paired bootstrap intervals")
    if gain.low <= gate.min_on_policy_gain:
        needed = pairs_needed(on_policy[0] - on_policy[1], gate.min_on_policy_gain, gate.confidence)
        figures["on_policy_pairs_needed"] = needed
        if gain.estimate > gate.min_on_policy_gain:
            return Decision(False, f"refused: not enough evidence: the on-policy gain's lower bound {gain.low:+.3f} "
                                   f"does not clear {gate.min_on_policy_gain:+.3f} on {gain.n} pairs (about {needed} "
                                   f"would at this gain); {stated}", figures)
        return Decision(False, f"refused: on-policy gain {gain.estimate:+.3f} is not above "
                               f"{gate.min_on_policy_gain:+.3f}; {stated}", figures)
    if change.low < -gate.max_fixed_drop:
        return Decision(False, f"refused: fixed held-out accuracy may have fallen: the change's lower bound "
                               f"{change.low:+.3f} is below -{gate.max_fixed_drop:.3f}; {stated}", figures)
    if spread_new is not None and spread_old and spread_new < gate.min_relative_spread * spread_old:
        return Decision(False, f"refused: a weaker teacher: its reward spread over the policy's responses is "
                               f"{spread_new / spread_old:.2f} of the incumbent's (minimum "
                               f"{gate.min_relative_spread:.2f}); {stated}", figures)
    return Decision(True, f"promoted: {stated}", figures)


def _interval(interval: Interval) -> str:
    return f"{interval.estimate:+.3f} [{interval.low:+.3f}, {interval.high:+.3f}] (n={interval.n})"


def _number(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"
