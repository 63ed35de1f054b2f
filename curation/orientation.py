"""Shown order <-> pair orientation: the one mapping judging and annotation share.

A pair is stored as (a, b). A judge or an annotator sees it in a shown order: "ab" (a first) or
"ba" (b first). What they answer is about positions on their screen ("A"/"B" from a judge,
"a"/"b" from Argilla), and is mapped back to the pair's orientation here before it is stored; a
stored winner is mapped forth to the screen (a judge's suggestion shown to annotators) the same way.
"""

from __future__ import annotations

SHOWN_ORDERS = ("ab", "ba")
_SWAP = {"a": "b", "b": "a", "tie": "tie"}


def to_pair(shown_winner: str | None, shown_order: str) -> str | None:
    """A winner as shown ("A", "B", "tie", any case) in the pair's orientation ("a", "b", "tie")."""
    if shown_winner is None:
        return None
    winner = shown_winner.lower()
    return winner if shown_order == "ab" else _SWAP[winner]


def to_shown(winner: str | None, shown_order: str) -> str | None:
    """A winner in the pair's orientation as it appears on screen ("a", "b", "tie")."""
    return to_pair(winner, shown_order)  # swapping twice is the identity: the map is its own inverse


def to_pair_logit(first_position_logit: float | None, shown_order: str) -> float | None:
    """log P(first shown) - log P(second shown) as log P(a) - log P(b)."""
    if first_position_logit is None:
        return None
    return first_position_logit if shown_order == "ab" else -first_position_logit
