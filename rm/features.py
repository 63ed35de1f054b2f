"""Frozen-backbone features of (prompt, response) texts, computed once and cached on disk.

A text's feature is the output of one transformer block of a frozen backbone, mean-pooled over its
tokens and taken at its last token, side by side (2 x hidden size). Heads trained on them (a linear
Bradley-Terry head: rm/heads.py) cost milliseconds, so many folds, seeds and arms reuse one pass of
the backbone: what makes suspect-label detection and the curation benchmark fit on two CPU cores.

The backbone runs only up to the block read (the blocks above it are dropped), in the precision
`auto` picks. The cache is a folder per feature spec (backbone, block, length, precision) holding
shards of (text key, vector); a text's key is the hash of its prompt, prompt messages and response.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from prefcurate.core.hashing import content_hash
from prefcurate.core.progress import Progress
from prefcurate.rm.data import encode, pad_batch

FEATURE_VERSION = "block-output:mean+last:v1"


@dataclass(frozen=True)
class FeatureSpec:
    backbone: str  # what it is called (a hub name, `embedded:...` or a folder): part of the cache key
    layer: int  # the block whose output is read, counted from 1
    max_length: int
    precision: str  # resolved: fp32 or bf16

    @property
    def key(self) -> str:
        return content_hash("features", FEATURE_VERSION, asdict(self))


@dataclass(frozen=True)
class Text:
    prompt: str
    response: str
    prompt_messages: str | None = None

    @property
    def key(self) -> str:
        return content_hash("feature-text", self.prompt, self.prompt_messages, self.response)


class FeatureCache:
    """Vectors of texts under one spec; missing ones are computed with the backbone at `model_path`."""

    def __init__(self, root: Path, spec: FeatureSpec, model_path: str, device: str = "cpu", batch_size: int = 16):
        self.spec, self.model_path, self.device, self.batch_size = spec, model_path, device, batch_size
        self.folder = Path(root) / spec.key[:16]
        self.folder.mkdir(parents=True, exist_ok=True)
        meta = self.folder / "spec.json"
        if not meta.exists():
            meta.write_text(json.dumps({"version": FEATURE_VERSION, **asdict(spec)}, indent=2) + "\n")
        self._vectors: dict[str, np.ndarray] = {}
        self._read: set[str] = set()
        self._read_new_shards()
        self.computed = 0  # texts this cache computed (not found stored)

    def _read_new_shards(self) -> None:
        """Shards written since (by this process or another one sharing the folder)."""
        for shard in sorted(self.folder.glob("part-*.npz")):
            if shard.name not in self._read:
                with np.load(shard) as stored:
                    self._vectors.update(zip(stored["keys"].tolist(), stored["vectors"]))
                self._read.add(shard.name)

    def vectors(self, texts: list[Text], label: str = "features") -> np.ndarray:
        """(len(texts), 2 x hidden) float32, in the order of `texts`."""
        keys = [text.key for text in texts]
        if any(key not in self._vectors for key in keys):
            self._read_new_shards()
        missing = {key: text for key, text in zip(keys, texts) if key not in self._vectors}
        if missing:
            computed = self._compute(list(missing.values()), label)
            self._save(list(missing), computed)
            self._vectors.update(zip(missing, computed))
            self.computed += len(missing)
        if not keys:
            return np.zeros((0, 0), dtype=np.float32)
        return np.stack([self._vectors[key] for key in keys]).astype(np.float32)

    def _save(self, keys: list[str], vectors: np.ndarray) -> None:
        # Written beside, then renamed: a killed run leaves whole shards or none.
        handle, staging = tempfile.mkstemp(suffix=".npz", dir=self.folder)
        os.close(handle)
        np.savez(staging, keys=np.array(keys), vectors=vectors)
        name = f"part-{len(list(self.folder.glob('part-*.npz'))):05d}-{keys[0][:8]}.npz"
        os.replace(staging, self.folder / name)
        self._read.add(name)

    def _compute(self, texts: list[Text], label: str) -> np.ndarray:
        model, tokenizer, captured = _truncated_backbone(self.model_path, self.spec.layer, self.device)
        ids = encode(tokenizer, [t.prompt for t in texts], [t.response for t in texts], self.spec.max_length,
                     [t.prompt_messages for t in texts]).ids
        out = np.zeros((len(texts), 2 * model.config.hidden_size), dtype=np.float32)
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]))  # similar lengths pad least
        autocast = torch.autocast(self.device.split(":")[0], dtype=torch.bfloat16, enabled=self.spec.precision == "bf16")
        with Progress(label, len(ids)) as progress, torch.inference_mode(), autocast:
            for start in range(0, len(order), self.batch_size):
                batch = order[start:start + self.batch_size]
                input_ids, mask = pad_batch([ids[i] for i in batch], tokenizer.pad_token_id)
                input_ids, mask = input_ids.to(self.device), mask.to(self.device)
                model(input_ids=input_ids, attention_mask=mask)
                hidden = captured["output"].float()
                weights = mask.unsqueeze(-1).float()
                mean = (hidden * weights).sum(1) / weights.sum(1)
                last = hidden[torch.arange(len(batch), device=hidden.device), mask.sum(1) - 1]
                out[batch] = torch.cat([mean, last], dim=1).cpu().numpy()
                progress.update(len(batch))
        return out


def _truncated_backbone(path: str, layer: int, device: str):
    """The backbone up to block `layer` (the blocks above are never run), and a dict its output
    lands in (a forward hook: hidden-state tuples differ between model families and versions)."""
    from transformers import AutoModel

    from prefcurate.rm.model import cut_blocks, load_tokenizer

    tokenizer = load_tokenizer(path)
    model = AutoModel.from_pretrained(path).to(device).eval()
    blocks = cut_blocks(model, layer, "suspicion.features.layer", str(path))
    captured: dict = {}
    blocks[layer - 1].register_forward_hook(
        lambda module, args, output: captured.__setitem__("output", output[0] if isinstance(output, tuple) else output))
    return model, tokenizer, captured
