"""torch.distributed for a run: rank and world size from torchrun's environment."""
from __future__ import annotations

import os

import torch


class Distributed:
    """Rank and world size from torchrun's environment; the process group when world > 1.

    ``torchrun --nproc_per_node N -m saliency_bench run ...`` shards the samples of every
    (model, dataset) across ranks (``todo[rank::world]`` of what the store has not done yet, so a
    restart with another number of ranks still covers exactly the rest). Each rank writes its
    own shard store; rank 0 merges the shards into the run's store between barriers, then
    scores the dataset-level metrics and writes the leaderboard. No two ranks write one file.
    """

    def __init__(self, device: torch.device) -> None:
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        self.device = device
        if self.world > 1:
            import torch.distributed as dist

            if device.type == "cuda":
                self.device = torch.device("cuda", self.local_rank if device.index is None else device.index)
                torch.cuda.set_device(self.device)
            if not dist.is_initialized():
                dist.init_process_group("nccl" if self.device.type == "cuda" else "gloo")
            self.backend = dist.get_backend()
        else:
            self.backend = None

    def barrier(self) -> None:
        if self.world > 1:
            import torch.distributed as dist

            dist.barrier()

    def close(self) -> None:
        if self.world > 1:
            import torch.distributed as dist

            if dist.is_initialized():
                dist.barrier()
                dist.destroy_process_group()
