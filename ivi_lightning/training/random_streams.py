"""Per-rank random streams: each DDP process draws its own noise, and a resumed run continues
every process's stream where the checkpoint left it."""

from __future__ import annotations

import random
import warnings
from typing import Any, Dict, List, Optional

import numpy as np
import pytorch_lightning as pl
import torch

RANK_SEED_STRIDE = 1_000_003  # rank r's noise stream is seeded with seed + RANK_SEED_STRIDE * r
CHECKPOINT_KEY = "ivi_rng"


def rng_state() -> Dict[str, Any]:
    """This process's torch (CPU and CUDA), numpy and Python random states, as plain types and tensors."""
    numpy_state: Any = np.random.get_state()
    _, key, pos, has_gauss, cached = numpy_state
    state: Dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "key": torch.from_numpy(key.astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        },
        "python": random.getstate(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Dict[str, Any]) -> None:
    """Put back a state from :func:`rng_state`."""
    torch.set_rng_state(state["torch"].cpu())
    n = state["numpy"]
    np.random.set_state(
        ("MT19937", n["key"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached_gaussian"])
    )
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])


class RankRandomStreams(pl.Callback):
    """Give each rank its own noise stream when training starts, or put back the saved streams.

    ``seed_everything`` gives every rank the same stream; rank ``r``'s is offset to
    ``seed + RANK_SEED_STRIDE * r`` so each process draws its own encoder noise, prior samples
    and corruption, reproducibly. Checkpoints record every rank's streams (gathered under DDP,
    where Lightning builds the checkpoint on every rank), and a resumed run continues them.

    Validation draws from the same stream but puts it back when it ends: training then draws
    the same noise whether or not a validation ran in between, so a run resumed from a
    checkpoint written just before a validation continues exactly.
    """

    def __init__(self) -> None:
        self._to_restore: Optional[List[Dict[str, Any]]] = None
        self._before_validation: Optional[Dict[str, Any]] = None

    def on_validation_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._before_validation = rng_state()

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        state, self._before_validation = self._before_validation, None
        if state is not None:
            set_rng_state(state)

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        states, self._to_restore = self._to_restore, None
        world, rank = trainer.world_size, trainer.global_rank
        if states and trainer.ckpt_path is not None:
            if len(states) == world:
                set_rng_state(states[rank])
                return
            warnings.warn(
                f"the checkpoint holds the random streams of {len(states)} processes but this run has "
                f"{world}: "
                "continuing from rank 0's stream offset by rank (the noise will differ from an uninterrupted "
                "run)",
                stacklevel=2,
            )
            set_rng_state(states[0])
            if world > 1:
                torch.manual_seed(int(torch.randint(2**62, ())) + RANK_SEED_STRIDE * rank)
            return
        if world > 1:
            torch.manual_seed(torch.initial_seed() + RANK_SEED_STRIDE * rank)

    def on_save_checkpoint(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: Dict[str, Any]
    ) -> None:
        states: List[Any] = [rng_state()]
        if trainer.world_size > 1 and torch.distributed.is_initialized():
            gathered: List[Any] = [None] * trainer.world_size
            torch.distributed.all_gather_object(gathered, states[0])
            states = gathered
        checkpoint[CHECKPOINT_KEY] = states

    def on_load_checkpoint(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: Dict[str, Any]
    ) -> None:
        self._to_restore = checkpoint.get(CHECKPOINT_KEY)
