"""A label model over many raters (curate.label_rule: dawid_skene): each judge and each annotator
is a rater with a reliability of its own, estimated from the votes themselves (Dawid & Skene, 1979).

Every rater r has a confusion matrix theta_r[k, l] = P(r votes l | the pair's true label is k)
over the labels a, b and tie; the labels have priors pi. EM from the majority vote: the E step gives
each pair a posterior over its true label from every vote on it, the M step re-estimates pi and
every theta_r from those posteriors (add-one smoothed, so a rater with few votes is not certain).
A rater who is often wrong counts for less, and one who is systematically wrong (says a for b)
counts in reverse, where a majority vote counts every vote the same.

The fitted labels go to label_model_labels (label, posterior confidence) and the raters'
estimated accuracy to label_model_raters; labelled_pairs reads them under the dawid_skene rule.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from prefcurate.core.store import Store

LABELS = ("a", "b", "tie")
ITERATIONS = 100
TOLERANCE = 1e-6


def fit_dawid_skene(items: np.ndarray, raters: np.ndarray, votes: np.ndarray, n_items: int, n_raters: int,
                    n_labels: int = len(LABELS)) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Votes as parallel arrays (item index, rater index, label index). Returns the posteriors
    (n_items x n_labels), the confusion matrices (n_raters x n_labels x n_labels) and the priors."""
    posteriors = np.full((n_items, n_labels), 1e-9)
    np.add.at(posteriors, (items, votes), 1.0)  # start from the vote shares (the majority vote)
    posteriors /= posteriors.sum(axis=1, keepdims=True)
    for _ in range(ITERATIONS):
        priors = (posteriors.sum(axis=0) + 1.0) / (n_items + n_labels)
        counts = np.ones((n_raters, n_labels, n_labels))  # add-one smoothing
        np.add.at(counts, (raters, slice(None), votes), posteriors[items])
        confusions = counts / counts.sum(axis=2, keepdims=True)
        log_post = np.tile(np.log(priors), (n_items, 1))
        np.add.at(log_post, items, np.log(confusions[raters, :, votes]))
        log_post -= log_post.max(axis=1, keepdims=True)
        updated = np.exp(log_post)
        updated /= updated.sum(axis=1, keepdims=True)
        change = np.abs(updated - posteriors).max()
        posteriors = updated
        if change < TOLERANCE:
            break
    return posteriors, confusions, priors


def refresh_label_model(store: Store) -> dict:
    """Fit on every judge vote (rating and ranking judges' score-derived ones too) and submitted
    human vote (annotation_votes: an annotator's latest, ratings and rankings included); store the
    labels and rater reliabilities."""
    rows = store.con.execute("""
        SELECT pair_id, 'judge:' || judge AS rater, winner FROM judgment_votes
        UNION ALL
        SELECT pair_id, 'annotator:' || annotator, winner FROM annotation_votes""").fetchall()
    if not rows:
        with store.transaction():
            store.con.execute("DELETE FROM label_model_labels")
            store.con.execute("DELETE FROM label_model_raters")
        return {"pairs": 0, "raters": {}}
    pair_ids = sorted({row[0] for row in rows})
    rater_ids = sorted({row[1] for row in rows})
    pair_index = {pair: i for i, pair in enumerate(pair_ids)}
    rater_index = {rater: i for i, rater in enumerate(rater_ids)}
    items = np.array([pair_index[row[0]] for row in rows])
    raters = np.array([rater_index[row[1]] for row in rows])
    votes = np.array([LABELS.index(row[2]) for row in rows])
    posteriors, confusions, priors = fit_dawid_skene(items, raters, votes, len(pair_ids), len(rater_ids))
    best = posteriors.argmax(axis=1)
    accuracy = (confusions.diagonal(axis1=1, axis2=2) * priors).sum(axis=1)
    n_votes = np.bincount(raters, minlength=len(rater_ids))
    with store.transaction():
        store.con.execute("DELETE FROM label_model_labels")
        store.con.execute("DELETE FROM label_model_raters")
        store.upsert("label_model_labels", pa.table({
            "pair_id": pair_ids, "label": [LABELS[k] for k in best],
            "confidence": posteriors[np.arange(len(pair_ids)), best].round(6)}))
        store.upsert("label_model_raters", pa.table({
            "rater": rater_ids, "n_votes": n_votes.astype("int64"), "accuracy": accuracy.round(4)}))
    return {"pairs": len(pair_ids), "raters": {rater: round(float(value), 3) for rater, value in zip(rater_ids, accuracy)}}
