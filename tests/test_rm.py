import json
import math

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from prefcurate.config import TrainConfig
from prefcurate.rm.data import encode
from prefcurate.rm.loss import bradley_terry_loss, pairwise_accuracy
from prefcurate.rm.score import RewardScorer
from prefcurate.rm.train import train_reward_model


def test_bradley_terry_loss_matches_the_formula():
    chosen, rejected = torch.tensor([2.0, 0.0]), torch.tensor([0.0, 1.0])
    expected = (-math.log(1 / (1 + math.exp(-2))) - math.log(1 / (1 + math.exp(1)))) / 2
    assert bradley_terry_loss(chosen, rejected).item() == pytest.approx(expected)
    assert bradley_terry_loss(torch.zeros(3), torch.zeros(3)).item() == pytest.approx(math.log(2))
    with_margin = bradley_terry_loss(torch.tensor([1.0]), torch.tensor([0.0]), margin=1.0)
    assert with_margin.item() == pytest.approx(math.log(2))
    assert pairwise_accuracy(chosen, rejected) == 0.5


def test_gradient_pushes_chosen_up_and_rejected_down():
    chosen, rejected = torch.zeros(1, requires_grad=True), torch.zeros(1, requires_grad=True)
    bradley_terry_loss(chosen, rejected).backward()
    assert chosen.grad.item() < 0 < rejected.grad.item()


def test_truncation_keeps_the_end_and_is_counted(tiny_model_dir):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    long = "word " * 300 + "THE END"
    encoded = encode(tokenizer, ["q", "q"], [long, "short"], max_length=64)
    assert encoded.truncated == 1
    assert len(encoded.ids[0]) == 64
    assert "END" in tokenizer.decode(encoded.ids[0])


def write_export(folder, n_train=48, n_test=16):
    """A planted preference: the chosen response says 'excellent', the rejected one 'terrible'."""
    folder.mkdir(parents=True)
    files = {}
    for split, n in (("train", n_train), ("test", n_test)):
        rows = [{"prompt": f"Question {i}?", "chosen": f"An excellent answer {i}.",
                 "rejected": f"A terrible answer {i}."} for i in range(n)]
        pq.write_table(pa.Table.from_pylist(rows), folder / f"{split}.parquet")
        files[split] = {"sha256": str(hash(split)), "rows": n}
    (folder / "manifest.json").write_text(json.dumps({"files": files}))
    return folder


def test_training_learns_a_planted_preference_and_the_checkpoint_reloads(tmp_path, store, tiny_model_dir):
    curated = write_export(tmp_path / "curated")
    config = TrainConfig(epochs=4, batch_size=8, learning_rate=3e-3, trainable_layers=None, max_length=64)
    result, report = train_reward_model(store, "run-1", curated, str(tiny_model_dir), config, tmp_path / "rm", "cpu")
    assert report.count_in == 48 and not result.reused
    assert result.metrics["mean_loss_last_epoch"] < math.log(2) - 0.1

    scorer = RewardScorer(str(result.checkpoint_dir))
    prompts = [f"Question {i}?" for i in range(100, 110)]
    chosen = scorer.score(prompts, [f"An excellent answer {i}." for i in range(100, 110)])
    rejected = scorer.score(prompts, [f"A terrible answer {i}." for i in range(100, 110)])
    assert sum(c > r for c, r in zip(chosen, rejected)) >= 9

    # HF layout: a plain from_pretrained with one label gives the same rewards.
    from transformers import AutoModelForSequenceClassification

    reloaded = AutoModelForSequenceClassification.from_pretrained(result.checkpoint_dir, num_labels=1).eval()
    ids = scorer.tokenizer(scorer.tokenizer.apply_chat_template(
        [{"role": "user", "content": prompts[0]}, {"role": "assistant", "content": "An excellent answer 100."}],
        tokenize=False), add_special_tokens=False, return_tensors="pt")
    with torch.inference_mode():
        direct = reloaded(**ids).logits.item()
    assert direct == pytest.approx(chosen[0], abs=1e-4)

    again, _ = train_reward_model(store, "run-1", curated, str(tiny_model_dir), config, tmp_path / "rm", "cpu")
    assert again.reused and again.rm_run_id == result.rm_run_id
    assert store.count("rm_runs") == 1
