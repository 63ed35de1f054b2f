"""Suspect labels: out-of-fold models find planted label flips, and curation drops, flips or holds
the flagged pairs for annotators, recording the evidence per curation run."""

from __future__ import annotations

import json

import numpy as np
import pytest

from prefcurate.core.config import CurateConfig, SuspicionConfig, config_from_dict
from prefcurate.curation.funnel.curate import curate
from prefcurate.rm.heads import fit_head, out_of_fold_margins
from prefcurate.rm.suspicion import LabelledPair, detect


def auroc(scores: np.ndarray, positives: np.ndarray) -> float:
    """The probability that a positive outscores a negative (ties count half)."""
    pos, neg = scores[positives], scores[~positives]
    return float(((pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()) / (len(pos) * len(neg)))


def test_a_linear_head_is_antisymmetric_and_learns_a_planted_direction():
    rng = np.random.default_rng(0)
    differences = rng.normal(size=(400, 8))
    a_preferred = (differences @ np.arange(1, 9) > 0).astype(float)
    head = fit_head(differences, a_preferred, l2=0.01)
    assert np.allclose(head.margins(-differences[:5]), -head.margins(differences[:5]))  # a swap flips the sign
    assert ((head.margins(differences) > 0) == (a_preferred > 0.5)).mean() > 0.95


def test_out_of_fold_heads_find_planted_flips_far_better_than_chance():
    rng = np.random.default_rng(1)
    n = 600
    differences = rng.normal(size=(n, 16))
    truth = (differences @ rng.normal(size=16) + rng.normal(scale=0.5, size=n)) > 0  # a noisy but learnable preference
    flipped = rng.random(n) < 0.2
    labels = np.where(truth ^ flipped, "a", "b")
    margins = out_of_fold_margins(differences, (labels == "a").astype(float), folds=5, repeats=2, seed=0, l2=0.1)
    pairs = [LabelledPair(str(i), label, "import", "p", None, "x", "y") for i, label in enumerate(labels)]
    def flags(threshold: float) -> tuple[float, float]:
        suspicion = detect(pairs, SuspicionConfig(max_label_probability=threshold), "balanced", margins)
        found = (suspicion.flagged & flipped).sum()
        return found / suspicion.flagged.sum(), found / flipped.sum()

    # Heads fitted on noisy labels are cautious (their probabilities shrink toward 1/2): the strict
    # default flags few pairs, nearly all of them flips; a looser threshold trades precision for recall.
    strict_precision, strict_recall = flags(0.3)
    loose_precision, loose_recall = flags(0.45)
    assert strict_precision > 0.9 and strict_recall > 0.1
    assert loose_precision > 0.8 > 3 * flipped.mean() and loose_recall > 0.6
    suspicion = detect(pairs, SuspicionConfig(), "balanced", margins)
    assert auroc(1 - suspicion.p_label, flipped) > 0.9
    # a person's answer outranks the models: human labels are never flagged
    humans = [LabelledPair(p.pair_id, p.label, "human", "p", None, "x", "y") for p in pairs]
    assert not detect(humans, SuspicionConfig(), "balanced", margins).flagged.any()


# -- through the store: import, suspect, curate ---------------------------------------------------------

GOOD = ["An excellent, careful answer {i}.", "A clear and kind reply {i}.", "A helpful explanation {i}."]
BAD = ["A terrible, rude answer {i}.", "A useless and hostile reply {i}.", "A harmful remark {i}."]


def write_planted_pairs(path, n: int = 60, share: float = 0.2, seed: int = 3) -> set[int]:
    """Pairs whose chosen side is kind and rejected side rude, a `share` of them swapped (the planted
    flips); returns the rows (1-based) flipped."""
    rng = np.random.default_rng(seed)
    flipped = set((rng.permutation(n)[:int(share * n)] + 1).tolist())
    with open(path, "w") as out:
        for row in range(1, n + 1):
            good, bad = GOOD[row % 3].format(i=row), BAD[row % 3].format(i=row)
            chosen, rejected = (bad, good) if row in flipped else (good, bad)
            out.write(json.dumps({"prompt": f"Question {row}: how should I reply to topic {row}?", "chosen": chosen,
                                  "rejected": rejected}) + "\n")
    return flipped


@pytest.fixture
def planted(tmp_path, tiny_model_dir):
    """A store of 60 imported pairs with 12 planted flips, and a config whose suspect stage reads
    the tiny model's second block (random weights still tell the kind words from the rude ones)."""
    from prefcurate.pipeline import import_stage

    data = tmp_path / "pairs.jsonl"
    flipped = write_planted_pairs(data)
    config = config_from_dict({
        "workdir": str(tmp_path / "out"), "store": {"path": str(tmp_path / "store.duckdb")},
        "suspicion": {"features": {"backbone": str(tiny_model_dir), "layer": 2, "max_length": 64, "device": "cpu"},
                      "folds": 5, "repeats": 2, "l2": 0.3},
        "curate": {"splits": {"validation": 0.0, "test": 0.0}, "dedup": {"near": {"enabled": False}}},
    })
    import_stage(config, str(data))
    return config, flipped


def flipped_pair_ids(store, rows: set[int]) -> set[str]:
    return {pair_id for pair_id, row in store.con.execute("SELECT pair_id, source_row FROM reference_labels").fetchall()
            if row in rows}


def test_the_suspect_stage_flags_planted_flips_and_reuses_its_run(planted):
    from prefcurate.pipeline import open_store, suspect_stage

    config, flipped_rows = planted
    summary = suspect_stage(config)
    assert summary["count_in"] == 60 and not summary["reused"]
    with open_store(config) as store:
        flipped = flipped_pair_ids(store, flipped_rows)
        flagged = {row[0] for row in store.con.execute("SELECT pair_id FROM pair_suspicion WHERE flagged").fetchall()}
        assert len(flagged & flipped) >= 9  # of the 12 planted flips
        assert len(flagged - flipped) <= 3  # random flagging would mislabel ~4 of every 5
        assert store.scalar("SELECT count(*) FROM pair_label_suspicion") == 60
    again = suspect_stage(config)  # same pool and settings: the stored run, no new rows
    assert again["reused"] and again["suspicion_run_id"] == summary["suspicion_run_id"]
    with open_store(config) as store:
        assert store.count("pair_label_suspicion") == 60 and store.count("suspicion_runs") == 1


@pytest.mark.parametrize("action", ["drop", "flip", "push"])
def test_curation_drops_flips_or_holds_flagged_pairs_with_the_evidence_per_run(planted, action):
    from prefcurate.pipeline import open_store, suspect_stage

    config, flipped_rows = planted
    suspect_stage(config)
    with open_store(config) as store:
        flagged = {row[0] for row in store.con.execute("SELECT pair_id FROM pair_suspicion WHERE flagged").fetchall()}
        result, _report = curate(store, CurateConfig(**{**config.curate.model_dump(), "suspect_labels": action}))
        step = [row for row in result.funnel if row[0].startswith("suspect_labels")]
        assert len(step) == 1
        name, count_in, count_out = step[0]
        evidence = store.con.execute("SELECT pair_id, action, p_label FROM curation_suspects WHERE curation_run_id = ?",
                                     [result.curation_run_id]).fetchall()
        assert {row[0] for row in evidence} == flagged and {row[1] for row in evidence} == {action}
        assert all(p <= config.suspicion.max_label_probability for _, _, p in evidence)
        curated = dict(store.con.execute("SELECT pair_id, label_source FROM curated_pairs WHERE curation_run_id = ?",
                                         [result.curation_run_id]).fetchall())
        if action == "flip":
            assert count_out == count_in and all(curated[p] == "import+flipped" for p in flagged)
            # a flipped planted flip now prefers the kind reply again
            kind = store.con.execute("""
                SELECT count(*) FROM curated_pairs c JOIN candidates t ON t.candidate_id = c.chosen_candidate
                WHERE c.curation_run_id = ? AND c.label_source = 'import+flipped'
                  AND (t.text LIKE '%excellent%' OR t.text LIKE '%kind%' OR t.text LIKE '%helpful%')""",
                [result.curation_run_id]).fetchone()[0]
            assert kind >= len(flagged & flipped_pair_ids(store, flipped_rows))
        else:
            assert count_out == count_in - len(flagged) and not flagged & set(curated)


def test_annotation_push_sends_flagged_pairs_with_the_reason_suspect(planted):
    from prefcurate.curation.annotation.push import select_pairs
    from prefcurate.pipeline import open_store, suspect_stage

    config, _ = planted
    suspect_stage(config)
    with open_store(config) as store:
        flagged = {row[0] for row in store.con.execute("SELECT pair_id FROM pair_suspicion WHERE flagged").fetchall()}
        selected = select_pairs(store, config.argilla, config.curate)
        suspects = {row["pair_id"] for row in selected if "suspect" in row["reasons"]}
        assert suspects == flagged


def test_fine_tuned_fold_models_flag_planted_flips_too(planted):
    """method: finetune (the train: recipe per fold, a GPU's job), here on the tiny model."""
    from prefcurate.pipeline import open_store, suspect_stage

    config, flipped_rows = planted
    config.suspicion.method, config.suspicion.folds = "finetune", 3
    config.train = config.train.model_copy(update={"base_model": config.suspicion.features.backbone, "epochs": 6,
                                                   "learning_rate": 3e-3, "trainable_layers": None, "max_length": 64,
                                                   "batch_size": 8, "compile": "off"})
    summary = suspect_stage(config)
    assert summary["method"] == "finetune" and summary["count_in"] == 60
    with open_store(config) as store:
        flipped = flipped_pair_ids(store, flipped_rows)
        flagged = {row[0] for row in store.con.execute("SELECT pair_id FROM pair_suspicion WHERE flagged").fetchall()}
    assert len(flagged & flipped) >= 6 and len(flagged & flipped) > 2 * len(flagged - flipped)
