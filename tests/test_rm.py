import json
import math

import pytest
import torch

from prefcurate.core.config import TrainConfig
from prefcurate.rm.data import encode
from prefcurate.rm.loss import bradley_terry_loss, pairwise_accuracy
from prefcurate.rm.score import RewardScorer
from prefcurate.rm.train_job import train_reward_model
from tests.support.exports import write_export


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




def test_training_learns_a_planted_preference_and_the_checkpoint_reloads(tmp_path, store, tiny_model_dir):
    curated = write_export(tmp_path / "curated")
    config = TrainConfig(method="finetune", epochs=4, batch_size=8, learning_rate=3e-3, trainable_layers=None, max_length=64)
    result, report = train_reward_model(store, "run-1", curated, str(tiny_model_dir), config, tmp_path / "rm", "cpu")
    assert report.count_in == 48 and not result.reused
    assert result.metrics["mean_loss_last_epoch"] < math.log(2) - 0.1

    scorer = RewardScorer(str(result.checkpoint_dir))
    prompts = [f"Question {i}?" for i in range(100, 110)]
    chosen = scorer.score(prompts, [f"An excellent answer {i}." for i in range(100, 110)])
    rejected = scorer.score(prompts, [f"A terrible answer {i}." for i in range(100, 110)])
    assert sum(c > r for c, r in zip(chosen, rejected)) >= 9

    from prefcurate.core.config import EvaluateConfig
    from prefcurate.rm.evaluate import evaluate_reward_model

    metrics, _ = evaluate_reward_model(store, result.rm_run_id, result.checkpoint_dir, curated, EvaluateConfig(), "cpu", 64)
    assert metrics["pairs"] == 16 and metrics["accuracy"] >= 0.9
    assert metrics["calibration"]["ece"] is not None and "easy" in metrics["by_difficulty"]["buckets"]
    low, high = metrics["accuracy_ci"]  # 95% bootstrap over the 16 pairs, in the report too
    assert low <= metrics["accuracy"] <= high and high - low < 0.5
    assert "95% interval" in (result.checkpoint_dir / "eval_report.md").read_text()

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


@pytest.mark.slow
def test_compiled_blocks_train_the_same_preference_and_save_plain_names(tmp_path, store, tiny_model_dir):
    """Regional compilation (~15 s to compile even a tiny block, hence slow): same learning, and the
    checkpoint's weights keep their plain names (no _orig_mod) so from_pretrained loads all of them."""
    from transformers import AutoModelForSequenceClassification

    curated = write_export(tmp_path / "curated")
    config = TrainConfig(method="finetune", epochs=4, batch_size=8, learning_rate=3e-3, trainable_layers=None, max_length=64,
                         compile="on", precision="bf16")
    result, _ = train_reward_model(store, "run-1", curated, str(tiny_model_dir), config, tmp_path / "rm", "cpu")
    assert result.metrics["members"][0]["compiled"] and result.metrics["members"][0]["packed"]
    assert result.metrics["mean_loss_last_epoch"] < math.log(2) - 0.1
    _, info = AutoModelForSequenceClassification.from_pretrained(result.checkpoint_dir, num_labels=1,
                                                                 output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]
    scorer = RewardScorer(str(result.checkpoint_dir))
    prompts = [f"Question {i}?" for i in range(100, 110)]
    chosen = scorer.score(prompts, [f"An excellent answer {i}." for i in range(100, 110)])
    rejected = scorer.score(prompts, [f"A terrible answer {i}." for i in range(100, 110)])
    assert sum(c > r for c, r in zip(chosen, rejected)) >= 9
    # Scoring with compiled blocks gives the eager rewards.
    compiled = RewardScorer(str(result.checkpoint_dir), compile="on")
    assert compiled.score(prompts, [f"An excellent answer {i}." for i in range(100, 110)]) == pytest.approx(chosen, abs=1e-4)
    assert compiled.compiled


def test_margin_and_centering_terms_follow_their_formulas():
    chosen, rejected = torch.tensor([1.0, 2.0]), torch.tensor([0.0, 1.0])
    margin = torch.tensor([0.5, 0.0])
    expected = (-math.log(1 / (1 + math.exp(-0.5))) - math.log(1 / (1 + math.exp(-1.0)))) / 2
    assert bradley_terry_loss(chosen, rejected, margin).item() == pytest.approx(expected)
    centred = bradley_terry_loss(chosen, rejected, 0.0, center_coefficient=0.1).item()
    assert centred - bradley_terry_loss(chosen, rejected).item() == pytest.approx(0.1 * (1 + 9) / 2)


def test_packed_batches_give_the_rewards_of_padded_ones(tiny_model_dir):
    from transformers import AutoTokenizer

    from prefcurate.rm.data import PairCollator, PairData, pair_features
    from prefcurate.rm.model import batch_rewards, load_reward_model

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    model, tokenizer = load_reward_model(str(tiny_model_dir), "cpu", "sdpa")
    model.eval()
    chosen = encode(tokenizer, ["Hi?", "Name a colour."], ["Hello there, friend.", "Blue."], 128).ids
    rejected = encode(tokenizer, ["Hi?", "Name a colour."], ["Go away.", "I do not know any colours at all. " * 6], 128).ids
    features = [pair_features(PairData(chosen, rejected, 0))[i] for i in range(2)]
    with torch.inference_mode():
        padded = batch_rewards(model, {k: v for k, v in PairCollator(tokenizer.pad_token_id)(features).items()
                                       if k != "margin"})
        packed_batch = PairCollator(tokenizer.pad_token_id, packed=True)(features)
        longest = max(len(seq) for seq in chosen + rejected)
        rows, width = packed_batch["input_ids"].shape
        assert width == longest and rows < 4  # four sequences share fewer rows than padding would need
        packed = batch_rewards(model, {k: v for k, v in packed_batch.items() if k != "margin"})
    assert packed.tolist() == pytest.approx(padded.tolist(), abs=1e-4)


def test_packed_batches_run_in_the_trainers_mixed_precision(tiny_model_dir):
    """accelerate applies bf16 autocast on the model's top-level forward; a packed batch must go
    through it (it once called the backbone directly and trained in fp32 under bf16)."""
    from types import MethodType

    from prefcurate.rm.data import PairCollator, PairData, pair_features
    from prefcurate.rm.model import batch_rewards, load_reward_model

    model, tokenizer = load_reward_model(str(tiny_model_dir), "cpu", "sdpa")
    # What accelerate's prepare_model does for mixed precision (done by hand: its state is a
    # process-wide singleton that earlier Trainers in the session have already fixed to fp32).
    model.forward = MethodType(torch.autocast("cpu", dtype=torch.bfloat16)(type(model).forward), model)
    matmul_dtypes = []
    linear = next(m for m in model.modules() if isinstance(m, torch.nn.Linear))
    linear.register_forward_hook(lambda module, args, output: matmul_dtypes.append(output.dtype))
    chosen = encode(tokenizer, ["Hi?"], ["Hello there, friend."], 64).ids
    rejected = encode(tokenizer, ["Hi?"], ["Go away."], 64).ids
    features = [pair_features(PairData(chosen, rejected, 0))[0]]
    for packed in (False, True):
        batch = PairCollator(tokenizer.pad_token_id, packed=packed)(features)
        rewards = batch_rewards(model, batch)
        assert rewards.shape == (2,) and rewards.requires_grad
    assert matmul_dtypes == [torch.bfloat16, torch.bfloat16]


def test_bf16_scoring_is_mixed_precision_and_stays_close_to_fp32(tiny_model_dir):
    from prefcurate.rm.score import score_sequences

    def scorer(precision):
        torch.manual_seed(0)  # the tiny checkpoint has no score head: the same random one each time
        return RewardScorer(str(tiny_model_dir), precision=precision)

    fp32, bf16 = scorer("fp32"), scorer("bf16")
    assert bf16.precision == "bf16" and bf16.model.score.weight.dtype == torch.bfloat16
    assert bf16.model.model.embed_tokens.weight.dtype == torch.float32
    assert bf16.model.model.norm.weight.dtype == torch.float32
    prompts = [f"Question {i}?" for i in range(12)]
    responses = [("A long answer. " * i) + str(i) for i in range(12)]
    exact, mixed = fp32.score(prompts, responses), bf16.score(prompts, responses)
    spread = max(exact) - min(exact)
    assert max(abs(a - b) for a, b in zip(exact, mixed)) < 0.05 * spread
    # bf16 weights stored ahead change nothing: autocast over the fp32 weights gives the same rewards.
    ids = encode(fp32.tokenizer, prompts, responses, 512).ids
    autocast = score_sequences(fp32.model, ids, fp32.tokenizer.pad_token_id, 8, "cpu", autocast_bf16=True)
    assert autocast == mixed


def test_an_ensemble_is_saved_together_and_scores_mean_min_and_std(tmp_path, store, tiny_model_dir):
    from prefcurate.core.config import EvaluateConfig
    from prefcurate.rm.evaluate import evaluate_reward_model
    from prefcurate.rm.score import score_candidates
    from tests.support.builders import add_candidates, add_prompt

    curated = write_export(tmp_path / "curated", n_train=24, n_test=12)
    config = TrainConfig(method="finetune", epochs=2, batch_size=8, learning_rate=3e-3, trainable_layers=None, max_length=64,
                         ensemble={"members": 2, "bootstrap": True})
    result, report = train_reward_model(store, "run-e", curated, str(tiny_model_dir), config, tmp_path / "rm", "cpu")
    assert report.details["members"] == 2
    assert json.loads((result.checkpoint_dir / "ensemble.json").read_text())["members"] == ["members/0", "members/1"]
    scorer = RewardScorer(str(result.checkpoint_dir))
    per_member = scorer.score_members(["Question 1?"] * 2, ["An excellent answer.", "A terrible answer."])
    assert len(per_member) == 2 and per_member[0] != per_member[1]  # different seeds and data, different models
    mean = scorer.score(["Question 1?"] * 2, ["An excellent answer.", "A terrible answer."])
    assert mean == pytest.approx([(a + b) / 2 for a, b in zip(*per_member)])

    prompt = add_prompt(store, "Question 1?")
    add_candidates(store, prompt, ["An excellent answer.", "A terrible answer.", "Meh."])
    first = score_candidates(store, scorer, result.rm_run_id)
    again = score_candidates(store, scorer, result.rm_run_id)
    assert first == {"scored": 3, "members": 2} and again["scored"] == 0
    rows = store.con.execute("SELECT reward, reward_min, reward_std FROM candidate_rewards").fetchall()
    assert all(std > 0 and low <= reward for reward, low, std in rows)

    metrics, _ = evaluate_reward_model(store, result.rm_run_id, result.checkpoint_dir, curated, EvaluateConfig(),
                                       "cpu", 64)
    assert metrics["ensemble"]["members"] == 2 and metrics["ensemble"]["mean_margin_std"] > 0
    assert (result.checkpoint_dir / "eval_plots.png").is_file()


def test_lora_trains_the_score_head_and_saves_a_plain_checkpoint(tmp_path, store, tiny_model_dir):
    from transformers import AutoModelForSequenceClassification

    curated = write_export(tmp_path / "curated", n_train=32, n_test=8)
    config = TrainConfig(method="finetune", epochs=3, batch_size=8, learning_rate=5e-3, max_length=64,
                         lora={"enabled": True, "r": 4, "alpha": 8, "dropout": 0.0})
    result, _ = train_reward_model(store, "run-l", curated, str(tiny_model_dir), config, tmp_path / "rm", "cpu")
    member = result.metrics["members"][0]
    full = sum(p.numel() for p in AutoModelForSequenceClassification.from_pretrained(tiny_model_dir, num_labels=1).parameters())
    assert 0 < member["trainable_parameters"] < full / 2
    assert not (result.checkpoint_dir / "adapter_config.json").exists()  # merged: no peft needed to load it
    reloaded = AutoModelForSequenceClassification.from_pretrained(result.checkpoint_dir, num_labels=1)
    assert reloaded.config.num_labels == 1
    assert result.metrics["mean_loss_last_epoch"] < math.log(2)


def test_steady_tokens_per_second_leaves_out_the_warm_up():
    from prefcurate.rm.trainer import steady_tokens_per_second

    # A slow first batch (compiling), then 100 tokens every 0.1 s.
    clock = [(10.0, 100)] + [(10.0 + 0.1 * i, 100 + 100 * i) for i in range(1, 12)]
    assert steady_tokens_per_second(clock) == pytest.approx(1000.0)
    assert steady_tokens_per_second(clock[:3]) is None  # too few batches past the warm-up to tell


def test_a_fitted_head_on_a_frozen_backbone_is_an_ordinary_checkpoint_that_learns(tmp_path, store, tiny_model_dir):
    """train.method head: one forward pass, a linear head on the cut backbone's last-token states,
    saved as a sequence classifier of the cut backbone that scores with exactly that head."""
    from transformers import AutoConfig

    curated = write_export(tmp_path / "curated")
    config = TrainConfig(method="head", head={"layer": 1, "l2": 0.01}, max_length=64)
    result, report = train_reward_model(store, "run-head", curated, str(tiny_model_dir), config, tmp_path / "rm", "cpu")
    assert report.details["method"] == "head" and result.metrics["members"][0]["train_accuracy"] >= 0.9
    assert AutoConfig.from_pretrained(result.checkpoint_dir).num_hidden_layers == 1  # the block above it is gone
    scorer = RewardScorer(str(result.checkpoint_dir))
    prompts = [f"Question {i}?" for i in range(100, 110)]
    chosen = scorer.score(prompts, [f"An excellent answer {i}." for i in range(100, 110)])
    rejected = scorer.score(prompts, [f"A terrible answer {i}." for i in range(100, 110)])
    assert sum(c > r for c, r in zip(chosen, rejected)) >= 9
    # auto picks the head on a CPU and fine-tuning on a GPU
    from prefcurate.rm.train import resolve_method

    assert resolve_method(TrainConfig(), "cpu") == "head" and resolve_method(TrainConfig(), "cuda") == "finetune"
