from prefcurate.core.config import PairingConfig
from prefcurate.curation.generation.pairing import build_pairs, choose_pairs
from tests.support.builders import add_candidates, add_prompt


def test_all_strategy_pairs_every_distinct_text_once():
    candidates = [("c1", "x"), ("c2", "y"), ("c3", "x "), ("c4", "z")]  # c3 repeats c1's text
    pairs = choose_pairs(candidates, PairingConfig(strategy="all"), "p")
    assert pairs == [("c1", "c2"), ("c1", "c4"), ("c2", "c4")]


def test_random_strategy_takes_k_pairs_deterministically():
    candidates = [(f"c{i}", f"text {i}") for i in range(5)]
    config = PairingConfig(strategy="random", max_pairs_per_prompt=3, seed=7)
    first = choose_pairs(candidates, config, "prompt-1")
    assert len(first) == 3 and len(set(first)) == 3
    assert all(a < b for a, b in first)
    assert first == choose_pairs(list(reversed(candidates)), config, "prompt-1")
    topped_up = choose_pairs(candidates, config, "prompt-1", existing=frozenset(first[:2]))
    assert len(topped_up) == 1 and topped_up[0] not in first[:2]


def test_build_pairs_is_idempotent_and_respects_existing_pairs(store):
    for n, text in enumerate(["p1", "p2"]):
        add_candidates(store, add_prompt(store, text), [f"{text} answer {i}" for i in range(4)])
    lonely = add_prompt(store, "p3")
    add_candidates(store, lonely, ["same", "same"])  # no two distinct texts: no pair
    config = PairingConfig(strategy="random", max_pairs_per_prompt=2)
    first = build_pairs(store, config)
    assert first.details["new_pairs"] == 4
    assert first.details["prompts_without_distinct_candidates"] == 1
    again = build_pairs(store, config)
    assert again.details["new_pairs"] == 0
    assert store.count("pairs") == 4
    grown = build_pairs(store, PairingConfig(strategy="random", max_pairs_per_prompt=3))
    assert grown.details["new_pairs"] == 2  # one more per prompt, never a repeat
    assert store.scalar("SELECT count(DISTINCT pair_id) FROM pairs") == 6
