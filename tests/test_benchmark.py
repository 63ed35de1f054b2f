"""`prefcurate evaluate --benchmark FILE`: pairs (RewardBench) and best-of-n (RewardBench 2) files
built here, scored by a reward model trained on a planted preference and by rewards given by hand."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from prefcurate.rm.benchmark import BenchmarkError, correctness, read_benchmark, summarize
from prefcurate.rm.stats import bootstrap_mean
from tests.support.inputs import write_jsonl


def by_text(rewards: dict[str, float]):
    return lambda prompts, responses: [rewards[text] for text in responses]


def test_pairs_layout_scores_subsets_sections_and_intervals_as_computed_by_hand(tmp_path):
    rows = [{"prompt": f"q{i}", "chosen": f"good{i}", "rejected": f"bad{i}", "subset": subset}
            for i, subset in enumerate(["math"] * 4 + ["code"] * 2 + ["chat"] * 6)]
    data = read_benchmark(write_jsonl(tmp_path / "bench.jsonl", rows))
    assert data.layout == "pairs" and len(data.rows) == 12
    rewards = {f"good{i}": 1.0 for i in range(12)} | {f"bad{i}": 0.0 for i in range(12)}
    rewards.update({"bad0": 2.0, "bad6": 2.0, "bad7": 2.0})  # math 3/4, code 2/2, chat 4/6
    correct = correctness(data.rows, by_text(rewards))
    summary = summarize(data.rows, correct, {"reasoning": ["math", "code"], "chat": ["chat"]})
    assert summary["overall"]["accuracy"] == pytest.approx(9 / 12)
    assert summary["subsets"]["math"]["accuracy"] == 0.75 and summary["subsets"]["code"]["accuracy"] == 1.0
    assert summary["sections"]["reasoning"]["accuracy"] == pytest.approx(5 / 6)
    assert summary["section_weighted"] == pytest.approx((5 / 6 + 4 / 6) / 2)  # sections count alike, not rows
    interval = bootstrap_mean(correct)
    assert (summary["overall"]["ci_low"], summary["overall"]["ci_high"]) == (interval.low, interval.high)


def test_best_of_n_needs_the_chosen_above_every_rejected(tmp_path):
    rows = [{"prompt": "q0", "chosen": ["c0"], "rejected": ["r0a", "r0b", "r0c"]},
            {"prompt": "q1", "chosen": "c1", "rejected": ["r1a", "r1b", "r1c"]}]
    data = read_benchmark(write_jsonl(tmp_path / "bo4.jsonl", rows))
    assert data.layout == "best-of-n" and [len(r.rejected) for r in data.rows] == [3, 3]
    rewards = {"c0": 1.0, "r0a": 0.0, "r0b": 0.5, "r0c": 0.9, "c1": 1.0, "r1a": 0.0, "r1b": 1.5, "r1c": 0.2}
    assert correctness(data.rows, by_text(rewards)).tolist() == [1.0, 0.0]  # q1: beats two of three, not all


def test_bad_rows_are_skipped_naming_row_and_field_and_an_unusable_file_is_an_error(tmp_path):
    path = write_jsonl(tmp_path / "mixed.jsonl", [
        {"prompt": "q", "chosen": "c", "rejected": "r"},
        {"prompt": "q", "chosen": "", "rejected": "r"},
        "{not json",
        {"prompt": "q", "chosen": "c", "rejected": [1, 2]},
    ])
    data = read_benchmark(path)
    assert len(data.rows) == 1
    assert [(s["row"], s["field"]) for s in data.skipped] == [(2, "chosen"), (3, None), (4, "rejected")]
    empty = write_jsonl(tmp_path / "none.jsonl", [{"question": "q"}])
    with pytest.raises(BenchmarkError, match=r"none.jsonl: no usable row \(row 1, prompt"):
        read_benchmark(empty)
    pq.write_table(pa.Table.from_pylist([{"prompt": "q", "chosen": "c", "rejected": ["r", "s"]}]), tmp_path / "b.parquet")
    assert read_benchmark(tmp_path / "b.parquet").layout == "best-of-n"


def test_a_trained_reward_model_and_any_checkpoint_score_benchmark_files_into_the_store(tmp_path, tiny_model_dir):
    from prefcurate.core.config import TrainConfig, config_from_dict
    from prefcurate.pipeline import benchmark_stage, open_store
    from prefcurate.rm.train_job import train_reward_model
    from tests.support.exports import write_export

    config = config_from_dict({"workdir": str(tmp_path / "out"), "store": {"path": str(tmp_path / "store.duckdb")},
                               "train": {"device": "cpu", "max_length": 64}})
    with open_store(config) as store:
        result, _ = train_reward_model(store, "run-1", write_export(tmp_path / "curated"), str(tiny_model_dir),
                                       TrainConfig(method="finetune", epochs=4, batch_size=8, learning_rate=3e-3, trainable_layers=None,
                                                   max_length=64), tmp_path / "rm", "cpu")
    pairs = write_jsonl(tmp_path / "rewardbench.jsonl", [
        {"prompt": f"Question {i}?", "chosen": f"An excellent answer {i}.", "rejected": f"A terrible answer {i}.",
         "subset": "planted" if i % 2 else "planted-too"} for i in range(200, 230)])
    best_of_4 = write_jsonl(tmp_path / "rewardbench2.jsonl", [
        {"prompt": f"Question {i}?", "chosen": f"An excellent answer {i}.",
         "rejected": [f"A terrible answer {i}.", f"A terrible answer {i + 1}.", f"A terrible answer {i + 2}."]}
        for i in range(300, 320)])
    ours = benchmark_stage(config, str(pairs))  # the latest of our runs
    assert ours["model"] == result.rm_run_id and ours["count_out"] == 30
    assert ours["accuracy"] >= 0.9 and ours["accuracy_ci"][0] <= ours["accuracy"] <= ours["accuracy_ci"][1]
    assert set(ours["subsets"]) == {"planted", "planted-too"}
    checkpoint = benchmark_stage(config, str(best_of_4), checkpoint=str(result.checkpoint_dir))  # any HF folder
    assert checkpoint["layout"] == "best-of-n" and checkpoint["accuracy"] >= 0.8
    with open_store(config) as store:
        stored = store.con.execute("SELECT layout, n_rows, ci_low <= accuracy AND accuracy <= ci_high "
                                   "FROM benchmark_evaluations ORDER BY layout").fetchall()
    assert stored == [("best-of-n", 20, True), ("pairs", 30, True)]
    assert "95% percentile bootstrap" in open(ours["report"]).read()
    assert np.isfinite(ours["accuracy"])
