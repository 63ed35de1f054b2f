"""The label model (curate.label_rule: dawid_skene): raters weighed by their estimated reliability.
The votes are built here with a known truth, so the right answer is known: one reliable judge, three
noisy ones, and one that is systematically wrong."""

from __future__ import annotations

import random

import numpy as np
import pyarrow as pa

from prefcurate.core.config import CurateConfig
from prefcurate.core.hashing import content_hash
from prefcurate.curation.funnel.curate import curate
from prefcurate.curation.label_model import fit_dawid_skene
from tests.support.builders import add_candidates, add_pair, add_prompt

RATERS = {"reliable": 0.92, "noisy-1": 0.6, "noisy-2": 0.6, "noisy-3": 0.6, "contrarian": 0.15}


def simulated_votes(n_items: int, seed: int = 0):
    rng = random.Random(seed)
    truth = [rng.choice("ab") for _ in range(n_items)]
    votes = []
    for item, label in enumerate(truth):
        for rater, accuracy in RATERS.items():
            right = rng.random() < accuracy
            votes.append((item, rater, label if right else ("b" if label == "a" else "a")))
    return truth, votes


def test_em_recovers_the_truth_better_than_counting_votes():
    truth, votes = simulated_votes(400)
    raters = sorted(RATERS)
    items = np.array([item for item, _, _ in votes])
    rater_index = np.array([raters.index(rater) for _, rater, _ in votes])
    labels = np.array(["ab".index(vote) for _, _, vote in votes])
    posteriors, confusions, _ = fit_dawid_skene(items, rater_index, labels, len(truth), len(raters), n_labels=2)
    fitted = ["ab"[k] for k in posteriors.argmax(axis=1)]
    counts = np.zeros((len(truth), 2))
    np.add.at(counts, (items, labels), 1)
    majority = ["ab"[k] for k in counts.argmax(axis=1)]
    accuracy = lambda guess: sum(g == t for g, t in zip(guess, truth)) / len(truth)  # noqa: E731
    assert accuracy(fitted) >= 0.9 and accuracy(fitted) > accuracy(majority) + 0.1
    estimated = {rater: confusions[i].diagonal().mean() for i, rater in enumerate(raters)}
    assert estimated["reliable"] > 0.85 and estimated["contrarian"] < 0.3
    assert all(0.45 < estimated[f"noisy-{k}"] < 0.75 for k in (1, 2, 3))


def test_curating_under_dawid_skene_labels_pairs_from_the_fitted_model(store):
    truth, votes = simulated_votes(120, seed=1)
    pair_ids, rows = [], []
    for index, label in enumerate(truth):
        prompt = add_prompt(store, f"Label model question {index}: which is better?")
        first, second = add_candidates(store, prompt, [f"answer one to {index}", f"answer two to {index}"])
        pair_id, _, _ = add_pair(store, prompt, first, second)
        pair_ids.append(pair_id)
    for item, rater, vote in votes:
        rows.append({"judgment_id": content_hash("lm", item, rater), "pair_id": pair_ids[item], "judge": rater,
                     "principle_id": "p", "shown_order": "ab", "template_version": "t", "constitution_version": "c",
                     "verdict_shown": vote.upper(), "winner": vote, "confidence_source": "none", "valid": True})
    store.insert_new("judgments", pa.Table.from_pylist(rows))
    result, report = curate(store, CurateConfig(label_rule="dawid_skene", min_agreement=0.0,
                                                splits={"validation": 0.0, "test": 0.0}))
    raters = report.details["label_model"]["raters"]
    assert raters["judge:reliable"] > raters["judge:noisy-1"] > raters["judge:contrarian"]
    labels = dict(store.con.execute("SELECT pair_id, label_by_dawid_skene FROM labelled_pairs").fetchall())
    majority = dict(store.con.execute("SELECT pair_id, label_by_vote FROM labelled_pairs").fetchall())
    truth_by_pair = dict(zip(pair_ids, truth))
    fitted_right = sum(labels[pair] == truth_by_pair[pair] for pair in pair_ids) / len(pair_ids)
    majority_right = sum(majority[pair] == truth_by_pair[pair] for pair in pair_ids) / len(pair_ids)
    assert fitted_right >= 0.85 and fitted_right > majority_right + 0.1
    sources = {row[0] for row in store.con.execute(
        "SELECT DISTINCT label_source FROM curated_pairs WHERE curation_run_id = ?", [result.curation_run_id]
        ).fetchall()}
    assert sources == {"dawid_skene"}
