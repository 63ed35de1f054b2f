"""Suspect labels: out-of-fold evidence against the labels of a labelled pool.

The pool is split into k folds; k reward models are trained, each on the other folds, and each
scores the pairs of its own fold, so no pair is scored by a model that saw it. A pair is flagged
when those models give its label a probability of at most `max_label_probability`: the rest of
the data strongly contradicts it. Two kinds of model:
- heads (CPU): linear Bradley-Terry heads on frozen-backbone features (rm/features.py, rm/heads.py),
  averaged over `repeats` fold assignments;
- finetune (a GPU's job): the train: recipe on each fold, scoring its held-out fold.

Human labels train the fold models like any other, but are never flagged: the evidence is a model's,
a person's answer outranks it. The run is keyed by its settings and every (pair, label) it saw.
"""

from __future__ import annotations

import json
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from prefcurate.core.config import SuspicionConfig, TrainConfig
from prefcurate.core.hashing import content_hash
from prefcurate.core.stage_report import StageReport
from prefcurate.rm.features import FeatureCache, Text
from prefcurate.rm.heads import out_of_fold_margins

if TYPE_CHECKING:  # the store needs duckdb; this module runs where it is not installed
    from prefcurate.core.store import Store

STAGE = "suspect"


@dataclass
class LabelledPair:
    pair_id: str
    label: str  # a or b
    label_source: str
    prompt: str
    prompt_messages: str | None
    text_a: str
    text_b: str


@dataclass
class Suspicion:
    run_id: str
    margins: np.ndarray  # out-of-fold reward(a) - reward(b), per pair
    p_label: np.ndarray
    flagged: np.ndarray
    details: dict = field(default_factory=dict)


def run_id(pairs: list[LabelledPair], config: SuspicionConfig, label_rule: str) -> str:
    return content_hash("suspicion", config.model_dump(mode="json", exclude={"features": {"cache_dir", "batch_size",
                                                                                            "device"}}),
                        label_rule, sorted((p.pair_id, p.label) for p in pairs))


def feature_differences(pairs: list[LabelledPair], cache: FeatureCache) -> np.ndarray:
    """f(a) - f(b) per pair, from one pass of the backbone over both sides (cached)."""
    texts = [Text(p.prompt, p.text_a, p.prompt_messages) for p in pairs]
    texts += [Text(p.prompt, p.text_b, p.prompt_messages) for p in pairs]
    vectors = cache.vectors(texts, "suspect: features")
    return vectors[:len(pairs)] - vectors[len(pairs):]


def detect(pairs: list[LabelledPair], config: SuspicionConfig, label_rule: str, margins: np.ndarray) -> Suspicion:
    """Flags from out-of-fold margins (a's reward minus b's)."""
    a_preferred = np.array([p.label == "a" for p in pairs])
    toward_label = np.where(a_preferred, margins, -margins)
    p_label = 1.0 / (1.0 + np.exp(-toward_label))
    human = np.array([p.label_source == "human" for p in pairs])
    flagged = (p_label <= config.max_label_probability) & ~human
    return Suspicion(run_id(pairs, config, label_rule), margins, p_label, flagged,
                     {"pairs": len(pairs), "flagged": int(flagged.sum()),
                      "oof_accuracy": float((toward_label > 0).mean()) if len(pairs) else None})


def head_margins(pairs: list[LabelledPair], config: SuspicionConfig, cache: FeatureCache) -> np.ndarray:
    differences = feature_differences(pairs, cache)
    a_preferred = np.array([p.label == "a" for p in pairs], dtype=float)
    return out_of_fold_margins(differences, a_preferred, config.folds, config.repeats, config.seed, config.l2)


def finetuned_margins(pairs: list[LabelledPair], config: SuspicionConfig, train: TrainConfig, base_model: str,
                      device: str) -> np.ndarray:
    """One fine-tuned reward model per fold (the train: recipe), scoring its held-out fold."""
    from transformers import AutoTokenizer

    from prefcurate.rm.data import PairData, encode
    from prefcurate.rm.score import RewardScorer
    from prefcurate.rm.train import train_member

    tokenizer = AutoTokenizer.from_pretrained(base_model)
    assignment = np.random.default_rng([config.seed, 0]).permutation(len(pairs)) % config.folds
    margins = np.zeros(len(pairs))
    for fold in range(config.folds):
        train_rows = [p for p, f in zip(pairs, assignment) if f != fold]
        chosen = [p.text_a if p.label == "a" else p.text_b for p in train_rows]
        rejected = [p.text_b if p.label == "a" else p.text_a for p in train_rows]
        prompts, messages = [p.prompt for p in train_rows], [p.prompt_messages for p in train_rows]
        data = PairData(encode(tokenizer, prompts, chosen, train.max_length, messages).ids,
                        encode(tokenizer, prompts, rejected, train.max_length, messages).ids, 0)
        held = [i for i, f in enumerate(assignment) if f == fold]
        with tempfile.TemporaryDirectory() as scratch:
            train_member(base_model, data, train, train.seed + fold, device, Path(scratch), f"suspect fold {fold + 1}")
            scorer = RewardScorer(scratch, device, train.max_length)
            rows = [pairs[i] for i in held]
            scores_a = scorer.score([p.prompt for p in rows], [p.text_a for p in rows], 16, [p.prompt_messages for p in rows])
            scores_b = scorer.score([p.prompt for p in rows], [p.text_b for p in rows], 16, [p.prompt_messages for p in rows])
        margins[held] = np.array(scores_a) - np.array(scores_b)
    return margins


def check_labels(pairs: list[LabelledPair], config: SuspicionConfig, label_rule: str, cache: FeatureCache | None,
                 train: TrainConfig | None = None, base_model: str | None = None, device: str = "cpu"
                 ) -> tuple[Suspicion, StageReport]:
    """The minutes-long part, with no store open: out-of-fold margins and the flags."""
    report = StageReport(STAGE, count_in=len(pairs), details={"method": config.method, "label_rule": label_rule})
    if len(pairs) < 2 * config.folds:
        raise ValueError(f"{len(pairs)} labelled pairs: too few for {config.folds} folds (suspicion.folds); "
                         f"label or import at least {2 * config.folds}")
    started = time.perf_counter()
    margins = (head_margins(pairs, config, cache) if config.method == "heads"
               else finetuned_margins(pairs, config, train, base_model, device))
    suspicion = detect(pairs, config, label_rule, margins)
    suspicion.details["seconds"] = round(time.perf_counter() - started, 2)
    flagged = suspicion.details["flagged"]
    report.count_out = flagged
    report.details.update(suspicion_run_id=suspicion.run_id, reused=False, seconds=suspicion.details["seconds"],
                          features_computed=cache.computed if cache else None,
                          oof_accuracy=round(suspicion.details["oof_accuracy"], 4), flagged=flagged,
                          flagged_share=round(flagged / len(pairs), 4), mean_p_label=round(float(np.mean(suspicion.p_label)), 4),
                          max_label_probability=config.max_label_probability)
    return suspicion, report.finish()


def stored_report(store: Store, pairs: list[LabelledPair], config: SuspicionConfig, label_rule: str
                  ) -> StageReport | None:
    """The report of a run already stored for this pool and these settings, or None."""
    key = run_id(pairs, config, label_rule)
    stored = store.one("SELECT n_flagged, oof_accuracy FROM suspicion_runs WHERE suspicion_run_id = ?", [key])
    if stored is None:
        return None
    return StageReport(STAGE, count_in=len(pairs), count_out=stored[0], details={
        "method": config.method, "label_rule": label_rule, "suspicion_run_id": key, "reused": True,
        "flagged": stored[0], "oof_accuracy": stored[1]}).finish()


def record(store: Store, suspicion: Suspicion, pairs: list[LabelledPair], config: SuspicionConfig,
           label_rule: str) -> None:
    rows = [{"suspicion_run_id": suspicion.run_id, "pair_id": p.pair_id, "label": p.label,
             "label_source": p.label_source, "oof_margin": float(m), "p_label": float(q), "flagged": bool(f)}
            for p, m, q, f in zip(pairs, suspicion.margins, suspicion.p_label, suspicion.flagged)]
    with store.transaction():
        store.con.execute(
            "INSERT OR IGNORE INTO suspicion_runs (suspicion_run_id, method, settings, label_rule, n_pairs, n_flagged, "
            "oof_accuracy, seconds) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [suspicion.run_id, config.method, json.dumps(config.model_dump(mode="json"), default=str), label_rule,
             len(pairs), suspicion.details["flagged"], suspicion.details["oof_accuracy"], suspicion.details["seconds"]])
        store.insert_new("pair_label_suspicion", store.arrow_rows("pair_label_suspicion", rows))
