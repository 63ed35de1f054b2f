"""Whether a retrained reward model replaces the one in charge.

The rule (configurable in refresh.gate): promote when accuracy on this round's on-policy held-out
pairs rises by more than min_on_policy_gain AND accuracy on the fixed held-out set falls by at most
max_fixed_drop; refuse when either held-out set is too small to tell. Every decision has a reason.
"""

from __future__ import annotations

from dataclasses import dataclass

from prefcurate.core.config import PromotionGate


@dataclass(frozen=True)
class Decision:
    promote: bool
    reason: str

    @property
    def label(self) -> str:
        return "promoted" if self.promote else "refused"


def decide(candidate: dict, incumbent: dict, gate: PromotionGate) -> Decision:
    """candidate / incumbent: {on_policy_accuracy, fixed_accuracy, on_policy_pairs, fixed_pairs}."""
    for name in ("on_policy", "fixed"):
        pairs = candidate.get(f"{name}_pairs") or 0
        if pairs < gate.min_heldout_pairs:
            return Decision(False, f"refused: {pairs} {name.replace('_', '-')} held-out pairs, fewer than "
                                   f"refresh.gate.min_heldout_pairs = {gate.min_heldout_pairs}")
    gain = candidate["on_policy_accuracy"] - incumbent["on_policy_accuracy"]
    drop = incumbent["fixed_accuracy"] - candidate["fixed_accuracy"]
    figures = (f"on-policy accuracy {incumbent['on_policy_accuracy']:.3f} -> {candidate['on_policy_accuracy']:.3f} "
               f"({gain:+.3f}), fixed {incumbent['fixed_accuracy']:.3f} -> {candidate['fixed_accuracy']:.3f} ({-drop:+.3f})")
    if gain <= gate.min_on_policy_gain:
        return Decision(False, f"refused: on-policy gain {gain:+.3f} is not above {gate.min_on_policy_gain:+.3f}; {figures}")
    if drop > gate.max_fixed_drop:
        return Decision(False, f"refused: fixed held-out accuracy fell {drop:.3f} > {gate.max_fixed_drop:.3f}; {figures}")
    return Decision(True, f"promoted: {figures}")
