"""One training over several processes (`torchrun`, `accelerate launch`).

Every rank runs the Trainer (accelerate wraps the model in DDP/FSDP and splits the batches); only
rank 0 reads the store, saves checkpoints and records the run. Rank 0 decides what to train and
sends that plan to the others, so no other rank ever opens the store.
"""

from __future__ import annotations

import os


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def rank() -> int:
    return int(os.environ.get("RANK", "0"))


def is_distributed() -> bool:
    return world_size() > 1


def share_plan(plan: dict | None, device: str) -> dict | None:
    """Rank 0's plan (None: nothing to train) on every rank; in a single process, the plan as is."""
    if not is_distributed():
        return plan
    import torch.distributed as dist

    if not dist.is_initialized():
        from accelerate import PartialState

        PartialState(cpu=device == "cpu")  # the process group the Trainer will use too
    box = [plan]
    dist.broadcast_object_list(box, src=0)
    return box[0]
