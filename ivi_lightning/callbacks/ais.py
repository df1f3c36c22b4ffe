"""AIS test log-likelihood of a model with explicit prior and likelihood, as a Lightning callback."""

from __future__ import annotations

import math
from typing import Any, Dict, List, Optional, Sequence

import pytorch_lightning as pl
import torch
from torch import Tensor

from ivi_lightning.data import batch_tensor
from ivi_lightning.evaluation.ais import annealed_importance_sampling, iwae_bound, require_densities

STAGES = ("test", "validation")


class AISCallback(pl.Callback):
    """Logs ``{stage}/ais_loglik`` (mean AIS ``log p(x)``), ``{stage}/ais_loglik_std`` (std over
    examples) and ``{stage}/ais_acceptance`` at the end of each test (or validation) epoch.

    Every batch is annealed in one go (see
    :func:`~ivi_lightning.evaluation.ais.annealed_importance_sampling`);
    the statistics are reduced over all processes. Optionally also logs the IWAE bound
    ``{stage}/iwae`` for models with an explicit Gaussian encoder (the VAE).

    ``ivi test --config <cfg> --ckpt_path <ckpt> --trainer.callbacks+=ivi_lightning.callbacks.AISCallback``
    (every algorithm has a ``test_step``), or use ``python -m ivi_lightning.evaluate``.

    Args:
        num_temperatures: AIS annealing transitions.
        num_chains: AIS chains per example.
        leapfrog_steps: leapfrog steps per HMC transition.
        max_examples: evaluate at most this many examples per process (``None``: all of them).
        schedule: ``"sigmoid"`` or ``"linear"`` temperature spacing.
        iwae_samples: importance samples of the IWAE bound (``0``: do not compute it).
        stages: where to run: ``"test"`` and/or ``"validation"`` (validation is costly during fit).
        progress: show a progress bar for each batch's annealing.
    """

    def __init__(
        self,
        num_temperatures: int = 1000,
        num_chains: int = 16,
        leapfrog_steps: int = 10,
        max_examples: Optional[int] = 1000,
        schedule: str = "sigmoid",
        iwae_samples: int = 0,
        stages: Sequence[str] = ("test",),
        progress: bool = False,
    ) -> None:
        super().__init__()
        for name, value in (
            ("num_temperatures", num_temperatures),
            ("num_chains", num_chains),
            ("leapfrog_steps", leapfrog_steps),
        ):
            if int(value) <= 0:
                raise ValueError(f"AISCallback: {name} must be a positive integer, got {value}")
        if max_examples is not None and int(max_examples) <= 0:
            raise ValueError(
                f"AISCallback: max_examples must be positive or None (all examples), got {max_examples}"
            )
        if int(iwae_samples) < 0:
            raise ValueError(
                f"AISCallback: iwae_samples must be >= 0 (0 turns the IWAE bound off), got {iwae_samples}"
            )
        unknown = [s for s in stages if s not in STAGES]
        if unknown or not stages:
            raise ValueError(
                f"AISCallback: stages must be a non-empty subset of {STAGES}, got {list(stages)}"
            )
        self.options: Dict[str, Any] = dict(
            num_temperatures=int(num_temperatures),
            num_chains=int(num_chains),
            leapfrog_steps=int(leapfrog_steps),
            schedule=schedule,
        )
        self.max_examples = None if max_examples is None else int(max_examples)
        self.iwae_samples, self.stages, self.progress = int(iwae_samples), tuple(stages), progress
        self._reset()

    def _reset(self) -> None:
        self._loglik: List[Tensor] = []
        self._acceptance: List[Tensor] = []
        self._iwae: List[Tensor] = []

    def _check(self, pl_module: Any) -> None:
        name = f"AISCallback (on {type(pl_module).__name__})"
        require_densities(getattr(pl_module, "prior", None), getattr(pl_module, "likelihood", None), name)

    def _start(self, trainer: pl.Trainer, pl_module: Any) -> None:
        self._check(pl_module)
        self._reset()

    def on_test_epoch_start(self, trainer: pl.Trainer, pl_module: Any) -> None:
        if "test" in self.stages:
            self._start(trainer, pl_module)

    def on_validation_epoch_start(self, trainer: pl.Trainer, pl_module: Any) -> None:
        if "validation" in self.stages and not trainer.sanity_checking:
            self._start(trainer, pl_module)

    def _batch(self, pl_module: Any, batch: Any) -> None:
        seen = sum(v.numel() for v in self._loglik)
        remaining = None if self.max_examples is None else self.max_examples - seen
        if remaining is not None and remaining <= 0:
            return
        x = pl_module.batch_data(batch) if hasattr(pl_module, "batch_data") else batch_tensor(batch)
        x = x[:remaining] if remaining is not None else x
        result = annealed_importance_sampling(
            pl_module.prior, pl_module.likelihood, x, progress=self.progress, **self.options
        )
        self._loglik.append(result.log_marginal.detach())
        self._acceptance.append(result.acceptance.detach())
        if self.iwae_samples and hasattr(getattr(pl_module, "encoder", None), "moments"):
            self._iwae.append(iwae_bound(pl_module, x, self.iwae_samples).detach())

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        if "test" in self.stages:
            self._batch(pl_module, batch)

    def on_validation_batch_end(
        self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0
    ) -> None:
        if "validation" in self.stages and not trainer.sanity_checking:
            self._batch(pl_module, batch)

    @staticmethod
    def _global_moments(pl_module: Any, values: List[Tensor]) -> Tensor:
        """``[count, sum, sum of squares]`` over every process."""
        flat = (
            torch.cat(values).double()
            if values
            else torch.zeros(0, dtype=torch.float64, device=pl_module.device)
        )
        moments = torch.stack([flat.new_tensor(float(flat.numel())), flat.sum(), flat.pow(2).sum()]).to(
            pl_module.device
        )
        gathered: Tensor = pl_module.all_gather(moments)
        return gathered.view(-1, 3).sum(0)

    def _finish(self, stage: str, pl_module: Any) -> None:
        prefix = "test" if stage == "test" else "val"
        for name, values in (
            ("ais_loglik", self._loglik),
            ("ais_acceptance", self._acceptance),
            ("iwae", self._iwae),
        ):
            if name == "iwae" and not self.iwae_samples:
                continue
            count, total, squares = self._global_moments(pl_module, values).tolist()
            if count == 0:
                continue
            mean = total / count
            pl_module.log(f"{prefix}/{name}", mean, sync_dist=True)
            if name != "ais_acceptance":
                variance = max(squares / count - mean**2, 0.0) * count / max(count - 1, 1)
                pl_module.log(f"{prefix}/{name}_std", math.sqrt(variance), sync_dist=True)
        self._reset()

    def on_test_epoch_end(self, trainer: pl.Trainer, pl_module: Any) -> None:
        if "test" in self.stages:
            self._finish("test", pl_module)

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: Any) -> None:
        if "validation" in self.stages and not trainer.sanity_checking:
            self._finish("validation", pl_module)
