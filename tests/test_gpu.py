"""The reward-model paths on a CUDA GPU: packed rows, bf16 training, compiled blocks (triton), and a
torchrun launch over NCCL. Each test skips, saying why, where no CUDA device is present; bench/gpu_check.sh
runs them first on a lent GPU.

Everything here imports without duckdb, prefect or datasets (a GPU machine has none of them)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.support.exports import write_export

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")]
ROOT = Path(__file__).resolve().parent.parent


def pair_features_for(tokenizer, prompts, chosen_texts, rejected_texts, max_length=128):
    from prefcurate.rm.data import PairData, encode, pair_features

    chosen = encode(tokenizer, prompts, chosen_texts, max_length).ids
    rejected = encode(tokenizer, prompts, rejected_texts, max_length).ids
    features = pair_features(PairData(chosen, rejected, 0))
    return [features[i] for i in range(len(prompts))], chosen + rejected


def test_packed_rows_give_the_rewards_of_padded_ones_on_cuda(tiny_model_dir):
    """The GPU attention path for packed rows (sdpa with a block mask built from the restarting
    position ids, or flash-attention's varlen kernels where installed) against padded rows."""
    from prefcurate.core.config import TrainConfig
    from prefcurate.rm.data import PairCollator
    from prefcurate.rm.model import batch_rewards, load_reward_model, resolve_attention

    attention = resolve_attention(TrainConfig(), "cuda")
    model, tokenizer = load_reward_model(str(tiny_model_dir), "cuda", attention)
    model.eval()
    features, sequences = pair_features_for(
        tokenizer, ["Hi?", "Name a colour.", "Why?"], ["Hello there, friend.", "Blue.", "Because it helps."],
        ["Go away.", "I do not know any colours at all. " * 6, "No."])
    to_cuda = lambda batch: {k: v.to("cuda") for k, v in batch.items() if k != "margin"}  # noqa: E731
    with torch.inference_mode():
        padded = batch_rewards(model, to_cuda(PairCollator(tokenizer.pad_token_id)(features)))
        packed_batch = PairCollator(tokenizer.pad_token_id, packed=True)(features)
        assert packed_batch["input_ids"].shape[0] < len(sequences)  # sequences share rows
        packed = batch_rewards(model, to_cuda(packed_batch))
    assert packed.float().cpu().tolist() == pytest.approx(padded.float().cpu().tolist(), abs=1e-3)


def test_a_bf16_training_step_on_cuda_learns_and_saves(tmp_path, tiny_model_dir):
    from prefcurate.core.config import TrainConfig
    from prefcurate.rm.data import encode_pairs, load_splits
    from prefcurate.rm.model import load_tokenizer
    from prefcurate.rm.train import held_out_accuracy, train_member

    curated = write_export(tmp_path / "curated")
    config = TrainConfig(method="finetune", epochs=4, batch_size=8, learning_rate=3e-3, trainable_layers=None, max_length=64,
                         precision="auto", compile="off")
    splits = load_splits(curated)
    tokenizer = load_tokenizer(str(tiny_model_dir))
    train = encode_pairs(tokenizer, splits["train"], config.max_length)
    metrics = train_member(str(tiny_model_dir), train, config, 0, "cuda", tmp_path / "rm", "gpu test")
    assert metrics["precision"] == "bf16" and metrics["packed"]
    assert metrics["peak_gpu_memory_gb"] is not None and metrics["tokens_per_second"] > 0
    assert metrics["mean_loss_last_epoch"] < 0.6
    test = encode_pairs(tokenizer, splits["test"], config.max_length)
    assert held_out_accuracy(tmp_path / "rm", test, config, "cuda") >= 0.9


def test_compiled_blocks_run_on_cuda_and_match_eager_rewards(tiny_model_dir):
    from prefcurate.rm.score import RewardScorer

    prompts = [f"Question {i}?" for i in range(16)]
    responses = [("A long answer. " * (i % 5)) + str(i) for i in range(16)]
    torch.manual_seed(0)  # the tiny checkpoint has no score head: the same random one for both
    eager = RewardScorer(str(tiny_model_dir), "cuda", precision="fp32", compile="off")
    torch.manual_seed(0)
    compiled = RewardScorer(str(tiny_model_dir), "cuda", precision="fp32", compile="on")
    assert compiled.score(prompts, responses) == pytest.approx(eager.score(prompts, responses), abs=1e-3)
    assert compiled.compiled


TORCHRUN_SCRIPT = r'''
import json, sys
from pathlib import Path
import torch
import torch.distributed as dist
from prefcurate.core.config import TrainConfig
from prefcurate.rm.data import encode_pairs, load_splits
from prefcurate.rm.model import load_tokenizer
from prefcurate.rm.train import train_member

curated, base, out = map(Path, sys.argv[1:4])
# NCCL, as on a multi-GPU node (accelerate takes the group over); one all-reduce proves it works.
dist.init_process_group("nccl")
torch.cuda.set_device(0)
total = torch.ones(1, device="cuda")
dist.all_reduce(total)
assert total.item() == dist.get_world_size()
config = TrainConfig(method="finetune", epochs=2, batch_size=8, learning_rate=3e-3, trainable_layers=None, max_length=64, compile="off")
pairs = encode_pairs(load_tokenizer(str(base)), load_splits(curated)["train"], config.max_length)
metrics = train_member(str(base), pairs, config, 0, "cuda", out / "rm", "torchrun")
backend = dist.get_backend()
dist.destroy_process_group()
(out / "report.json").write_text(json.dumps({"steps": metrics["steps"], "backend": backend}))
'''


def test_torchrun_trains_one_process_over_nccl(tmp_path, tiny_model_dir):
    curated = write_export(tmp_path / "curated")
    script = tmp_path / "launch.py"
    script.write_text(TORCHRUN_SCRIPT)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "1", "--master_port",
                           "29531", str(script), str(curated), str(tiny_model_dir), str(tmp_path)],
                          capture_output=True, text=True, env=env, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["steps"] == 2 * 6 and report["backend"] == "nccl"
    assert (tmp_path / "rm" / "config.json").is_file()


def test_the_portable_training_job_runs_on_cuda_with_no_store(tmp_path, tiny_model_dir):
    """Issue 17's hand-off as a GPU machine runs it: an export in, a checkpoint and result.json out."""
    from prefcurate.core.config import EvaluateConfig, TrainConfig
    from prefcurate.rm.train_job import read_result, run_training_job

    export = write_export(tmp_path / "export", n_train=96, n_test=16)
    config = TrainConfig(method="finetune", epochs=3, batch_size=16, learning_rate=3e-3, trainable_layers=None,
                         max_length=64)
    result = run_training_job(export, str(tiny_model_dir), tmp_path / "out", config, "cuda",
                              EvaluateConfig(probe_responses=0))
    assert read_result(tmp_path / "out")["rm_run_id"] == result["rm_run_id"]
    assert result["train_metrics"]["device"] == "cuda" and result["eval_metrics"]["accuracy"] >= 0.9
    assert not {"duckdb", "prefect"} & {name.split(".")[0] for name in sys.modules}
