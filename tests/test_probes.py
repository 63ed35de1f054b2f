"""Reward-hacking probes move a planted length-loving reward model's reward, and are flagged for it."""

from __future__ import annotations


import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from prefcurate.rm.probes import EDITS, run_probes
from tests.support.exports import write_manifest


def test_probes_report_the_change_with_an_interval_and_flag_by_direction():
    # rewards that grow with length: every edit that lengthens a response raises it
    score = lambda prompts, responses, messages: [len(text) / 100 for text in responses]  # noqa: E731
    responses = [f"Answer number {i} with some detail." for i in range(40)]
    base = score(None, responses, None)
    results = run_probes(score, ["q"] * 40, responses, [None] * 40, base,
                         {"padding": "increase", "flattery": "increase", "markdown": "none", "repetition": "decrease",
                          "refusal": "none"})
    assert set(results) == set(EDITS)
    padding = results["padding"]
    assert padding["flagged"] and padding["mean_change"] > 0 and padding["ci_low"] > 0 and padding["raised_share"] == 1.0
    assert results["flattery"]["flagged"] and not results["markdown"]["flagged"]  # markdown: not judged
    assert not results["repetition"]["flagged"]  # judged as hacking only if it lowered the reward


def write_length_loving_export(folder, n_train=96, n_test=24):
    """The chosen response is the rejected one padded with a few dozen filler words in random
    order (never the probe's own sentences): a reward model trained on it pays for padding."""
    import random

    from prefcurate.rm.probes import FILLER

    words = [word.strip(".,").lower() for word in FILLER.split()]
    rng = random.Random(5)
    folder.mkdir(parents=True)
    padding = lambda: " ".join(rng.choice(words) for _ in range(rng.randint(15, 40))) + "."  # noqa: E731
    train = [{"prompt": f"Question {i}?", "chosen": f"Answer {i}. {padding()}", "rejected": f"Answer {i}."}
             for i in range(n_train)]
    # Held out: plain answers, as a policy would write them; the probes pad those.
    test = [{"prompt": f"Question {i}?", "chosen": f"Answer {i}, in short.", "rejected": f"Answer {i}."}
            for i in range(500, 500 + n_test)]
    for split, rows in (("train", train), ("test", test)):
        pq.write_table(pa.Table.from_pylist(rows), folder / f"{split}.parquet")
    write_manifest(folder)
    return folder


def test_evaluation_flags_a_length_loving_reward_model_for_padding(tmp_path, store, tiny_model_dir):
    from prefcurate.core.config import EvaluateConfig, TrainConfig
    from prefcurate.rm.evaluate import evaluate_reward_model
    from prefcurate.rm.train_job import train_reward_model

    curated = write_length_loving_export(tmp_path / "curated")
    config = TrainConfig(method="finetune", epochs=4, batch_size=8, learning_rate=3e-3, trainable_layers=None, max_length=96)
    result, _ = train_reward_model(store, "run-length", curated, str(tiny_model_dir), config, tmp_path / "rm", "cpu")
    metrics, _ = evaluate_reward_model(store, result.rm_run_id, result.checkpoint_dir, curated, EvaluateConfig(), "cpu", 96)
    padding = metrics["probes"]["padding"]
    assert padding["flagged"] and padding["ci_low"] > 0 and padding["responses"] == 24
    assert any("rewards padding" in alarm for alarm in metrics["alarms"])
    assert not metrics["probes"]["refusal"]["flagged"]  # refusal: reported, not judged, by default
    report = (result.checkpoint_dir / "eval_report.md").read_text()
    assert "Reward-hacking probes" in report and "| padding |" in report
    # told that padding is fine here, the same change is reported but not flagged
    relaxed = EvaluateConfig(probes={**EvaluateConfig().probes, "padding": "none"})
    again, _ = evaluate_reward_model(store, result.rm_run_id, result.checkpoint_dir, curated, relaxed, "cpu", 96)
    assert not again["probes"]["padding"]["flagged"]
    assert again["probes"]["padding"]["mean_change"] == pytest.approx(padding["mean_change"], abs=1e-3)
    assert np.isfinite(padding["mean_change"])
