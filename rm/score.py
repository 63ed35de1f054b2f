"""Score (prompt, response) pairs with a trained reward model or ensemble, batched and length-sorted."""

from __future__ import annotations

import statistics
from pathlib import Path

import pyarrow as pa
import torch

from prefcurate.core.progress import Progress
from prefcurate.rm.data import encode, pad_batch
from prefcurate.rm.model import compile_blocks, load_reward_model, member_dirs, native_bf16, resolve_compile

# Compiling takes ~15 s on 2 CPU cores and then scores ~1.7x faster: it repays itself from about
# a thousand sequences (bench/rm_score.py).
COMPILE_MIN_SEQUENCES = 1024


@torch.inference_mode()
def score_sequences(model, sequences: list[list[int]], pad_id: int, batch_size: int, device: str,
                    progress: Progress | None = None, autocast_bf16: bool = False) -> list[float]:
    # Sorting by length keeps padding (wasted compute) low; results go back in input order.
    order = sorted(range(len(sequences)), key=lambda i: len(sequences[i]))
    rewards = [0.0] * len(sequences)
    was_training = model.training
    model.eval()
    with torch.autocast(device.split(":")[0], dtype=torch.bfloat16, enabled=autocast_bf16):
        for start in range(0, len(order), batch_size):
            index = order[start:start + batch_size]
            ids, mask = pad_batch([sequences[i] for i in index], pad_id)
            values = model(input_ids=ids.to(device), attention_mask=mask.to(device),
                           use_cache=False).logits.squeeze(-1).float().cpu()
            for i, value in zip(index, values.tolist()):
                rewards[i] = value
            if progress is not None:
                progress.update(len(index))
    model.train(was_training)
    return rewards


def scoring_precision(precision: str, device: str) -> str:
    """auto: bf16 where the device multiplies it natively (a GPU with bf16, an AMX or AVX512-BF16
    CPU), else fp32.

    bf16 is mixed precision, as in training: bf16 matmuls, the embeddings, norms and residual stream
    in fp32. On SmolLM2-135M it moved rewards by 0.05 at most and scored 2.5-3x faster than fp32 on
    an AMX CPU (bench/rm_score.py).
    """
    if precision != "auto":
        return precision
    return "bf16" if native_bf16(device) else "fp32"


def cast_matmul_weights(model, dtype: torch.dtype) -> None:
    """Store the Linear layers' weights in `dtype`. Under autocast this changes no result (autocast
    rounds fp32 weights to bf16 on every call anyway) but skips that rounding and halves their memory;
    embeddings and norms keep fp32."""
    for module in model.modules():
        if isinstance(module, torch.nn.Linear):
            module.to(dtype)


class RewardScorer:
    """A checkpoint (one model or an ensemble) loaded once, scoring many (prompt, response) pairs."""

    def __init__(self, checkpoint: str | Path, device: str = "cpu", max_length: int = 512, precision: str = "fp32",
                 compile: str = "off"):
        self.compile = compile  # auto: compile the blocks (once) for jobs of COMPILE_MIN_SEQUENCES or more
        self.compiled = False
        self.members = []
        self.precision = scoring_precision(precision, device)
        for member in member_dirs(checkpoint):
            model, tokenizer = load_reward_model(str(member), device)
            if self.precision == "bf16":
                cast_matmul_weights(model, torch.bfloat16)
            self.members.append(model.eval())
            self.tokenizer = tokenizer
        self.model = self.members[0]
        self.device = device
        self.max_length = max_length

    @property
    def is_ensemble(self) -> bool:
        return len(self.members) > 1

    def score_members(self, prompts: list[str], responses: list[str], batch_size: int = 8,
                      prompt_messages: list[str | None] | None = None, label: str | None = None) -> list[list[float]]:
        """rewards[k][i]: member k's reward for pair i."""
        encoded = encode(self.tokenizer, prompts, responses, self.max_length, prompt_messages)
        self._compile_for(len(encoded.ids) * len(self.members))
        with Progress(label or "score", len(encoded.ids) * len(self.members)) as progress:
            return [score_sequences(model, encoded.ids, self.tokenizer.pad_token_id, batch_size, self.device,
                                    progress if label else None, autocast_bf16=self.precision == "bf16")
                    for model in self.members]

    def compile_now(self) -> bool:
        """Compile the blocks now, whatever the job size, if the setting allows: a long-lived server
        pays the compile once at start instead of never (its calls are small). Returns whether compiled."""
        self._compile_for(COMPILE_MIN_SEQUENCES)
        return self.compiled

    def _compile_for(self, sequences: int) -> None:
        if self.compiled or (self.compile == "auto" and sequences < COMPILE_MIN_SEQUENCES):
            return
        if resolve_compile(self.compile, self.device, self.model.num_parameters()):
            for model in self.members:
                compile_blocks(model, fall_back_to_eager=self.compile == "auto")
            self.compiled = True

    def score(self, prompts: list[str], responses: list[str], batch_size: int = 8,
              prompt_messages: list[str | None] | None = None) -> list[float]:
        """The mean reward over members."""
        per_member = self.score_members(prompts, responses, batch_size, prompt_messages)
        return [statistics.fmean(values) for values in zip(*per_member)]


def score_candidates(store, scorer: RewardScorer, rm_run_id: str, batch_size: int = 16,
                     only_new: bool = True, prompt_ids: list[str] | None = None) -> dict:
    """Score stored candidates (those without a reward from this run, by default; of prompt_ids
    only, if given) into candidate_rewards; ensembles store mean, min and std."""
    params: dict = {}
    where = ["true"]
    if only_new:
        where.append("candidate_id NOT IN (SELECT candidate_id FROM candidate_rewards WHERE rm_run_id = $run)")
        params["run"] = rm_run_id
    if prompt_ids is not None:
        where.append("list_contains($prompts, prompt_id)")
        params["prompts"] = prompt_ids
    rows = store.con.sql(f"""
        SELECT candidate_id, prompt, prompt_messages, text
        FROM candidate_texts WHERE {' AND '.join(where)} ORDER BY candidate_id""",
                         params=params or None).fetchall()
    if not rows:
        return {"scored": 0, "members": len(scorer.members)}
    ids, prompts, messages, responses = map(list, zip(*rows))
    per_member = scorer.score_members(prompts, responses, batch_size, messages, label="score")
    table = pa.table({
        "rm_run_id": [rm_run_id] * len(ids), "candidate_id": ids,
        "reward": [statistics.fmean(values) for values in zip(*per_member)],
        "reward_min": [min(values) for values in zip(*per_member)],
        "reward_std": [statistics.pstdev(values) if len(values) > 1 else None for values in zip(*per_member)],
    })
    with store.transaction():
        store.upsert("candidate_rewards", table)
    return {"scored": len(ids), "members": len(scorer.members)}
