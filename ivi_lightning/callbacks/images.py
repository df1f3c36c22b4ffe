"""Image callbacks: sample grids, reconstructions, latent interpolations and a scatter of the
aggregate posterior, written to TensorBoard and as PNGs into the log directory.

All of them run on global rank 0 only and write through ``trainer.logger.experiment``
directly (no ``self.log``, no collectives), so other ranks never wait on them.
"""

from __future__ import annotations

import os
from typing import Any, Dict, Optional

import pytorch_lightning as pl
import torch
from pytorch_lightning.utilities import rank_zero_only, rank_zero_warn
from torch import Tensor

from ivi_lightning.callbacks.common import local_log_dir, private_random_stream
from ivi_lightning.data import batch_labels, batch_tensor


def decode_mean(pl_module: Any, z: Tensor) -> Tensor:
    """Images for latents ``z``: ``likelihood.mean(z)`` if the likelihood has a mean, else a sample."""
    likelihood = pl_module.likelihood
    return likelihood.mean(z) if callable(getattr(likelihood, "mean", None)) else likelihood.sample(z)


def _as_images(x: Tensor) -> Tensor:
    """``[N, C, H, W]`` in ``[0, 1]`` for saving (vectors are shown as 1-pixel-high strips)."""
    x = x.detach().float().cpu()
    if x.dim() == 2:
        x = x[:, None, None, :]
    elif x.dim() == 3:
        x = x[:, None]
    return x.clamp(0.0, 1.0)


class ImageCallback(pl.Callback):
    """Schedule and plumbing shared by the image callbacks.

    Keeps a fixed set of up to ``num_examples`` data examples (with labels when batches carry
    them) from the first validation batches seen (training batches if there is no validation),
    and calls :meth:`make` every ``every_n_steps`` optimizer steps and/or at the end of every
    training epoch, and at the end of training.

    Args:
        every_n_steps: draw every this many optimizer steps (``trainer.global_step``, which
            counts the steps of every optimizer); ``None`` or 0: only at epoch ends.
        on_epoch_end: also draw at the end of every training epoch.
        num_examples: data examples kept for reconstructions, interpolations or scatters.
        save_png: also save ``<tag>_step<N>.png`` and ``<tag>_latest.png`` in the run's log directory.
        seed: seed of the drawing's private random stream (prior draws, encoder noise).
    """

    tag = "images"

    def __init__(
        self,
        every_n_steps: Optional[int] = 500,
        on_epoch_end: bool = True,
        num_examples: int = 64,
        save_png: bool = True,
        seed: int = 0,
    ) -> None:
        if every_n_steps is not None and every_n_steps < 0:
            raise ValueError(
                f"every_n_steps must be positive (or None/0 to draw only at epoch ends), got {every_n_steps}"
            )
        if num_examples <= 0:
            raise ValueError(f"num_examples must be positive, got {num_examples}")
        self.every_n_steps, self.on_epoch_end, self.num_examples, self.save_png = (
            every_n_steps or 0,
            on_epoch_end,
            num_examples,
            save_png,
        )
        self.seed = seed
        self.examples: Optional[Tensor] = None
        self.labels: Optional[Tensor] = None
        self._from_validation = False
        self._last_step = -1
        self.last_paths: list = []

    # --- state ---------------------------------------------------------------------------
    @property
    def state_key(self) -> str:
        return f"{type(self).__qualname__}{{'every_n_steps': {self.every_n_steps}, 'seed': {self.seed}}}"

    def state_dict(self) -> Dict[str, Any]:
        """The step last drawn and the kept examples: a resumed run draws when an uninterrupted one would."""
        return {
            "last_step": self._last_step,
            "examples": self.examples,
            "labels": self.labels,
            "from_validation": self._from_validation,
        }

    def load_state_dict(self, state_dict: Dict[str, Any]) -> None:
        self._last_step = int(state_dict.get("last_step", -1))
        self.examples, self.labels = state_dict.get("examples"), state_dict.get("labels")
        self._from_validation = bool(state_dict.get("from_validation", False))

    # --- examples ------------------------------------------------------------------------
    def _collect(self, batch: Any, validation: bool) -> None:
        if validation and not self._from_validation:
            self.examples, self.labels, self._from_validation = None, None, True  # prefer fixed held-out data
        if self._from_validation != validation or (
            self.examples is not None and len(self.examples) >= self.num_examples
        ):
            return
        x, y = batch_tensor(batch), batch_labels(batch)
        room = self.num_examples - (0 if self.examples is None else len(self.examples))
        x = x[:room].detach().cpu()
        self.examples = x if self.examples is None else torch.cat([self.examples, x])
        if y is not None:
            y = y[:room].detach().cpu()
            self.labels = y if self.labels is None else torch.cat([self.labels, y])

    @rank_zero_only
    def on_validation_batch_end(
        self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx: int = 0
    ) -> None:
        if dataloader_idx == 0:
            self._collect(batch, validation=True)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.is_global_zero:
            self._collect(batch, validation=False)
        # global_step counts every optimizer's steps, so it can jump past a multiple.
        if (
            self.every_n_steps
            and trainer.global_step // self.every_n_steps > max(self._last_step, 0) // self.every_n_steps
        ):
            self.draw(trainer, pl_module)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: Any) -> None:
        if self.on_epoch_end and trainer.global_step != self._last_step:
            self.draw(trainer, pl_module)

    def on_train_end(self, trainer: pl.Trainer, pl_module: Any) -> None:
        if trainer.global_step != self._last_step:
            self.draw(trainer, pl_module)

    # --- drawing -------------------------------------------------------------------------
    @rank_zero_only
    def draw(self, trainer: pl.Trainer, pl_module: Any) -> None:
        """Make this callback's image and write it (rank 0 only)."""
        self._last_step = trainer.global_step
        was_training = pl_module.training
        pl_module.eval()
        device = pl_module.device
        # A private, fixed random stream: every drawing uses the same prior draws and noise (so
        # successive grids are comparable), and training's own stream is left untouched.
        with private_random_stream(device, self.seed):
            try:
                with torch.no_grad():
                    self.make(trainer, pl_module)
            finally:
                pl_module.train(was_training)

    def make(self, trainer: pl.Trainer, pl_module: Any) -> None:
        raise NotImplementedError

    def _log_dir(self, trainer: pl.Trainer) -> str:
        return local_log_dir(trainer)  # not trainer.log_dir: it is a collective call

    def write_grid(self, trainer: pl.Trainer, images: Tensor, nrow: int) -> None:
        """Tile ``images`` (``[N, C, H, W]``, clamped to ``[0, 1]``) ``nrow`` per row; log and save."""
        from torchvision.utils import make_grid, save_image

        grid = make_grid(_as_images(images), nrow=nrow, padding=2, pad_value=1.0)
        experiment: Any = getattr(trainer.logger, "experiment", None)
        if hasattr(experiment, "add_image"):
            experiment.add_image(f"images/{self.tag}", grid, global_step=trainer.global_step)
        if self.save_png:
            log_dir = self._log_dir(trainer)
            self.last_paths = [
                os.path.join(log_dir, f"{self.tag}_step{trainer.global_step:06d}.png"),
                os.path.join(log_dir, f"{self.tag}_latest.png"),
            ]
            for path in self.last_paths:
                save_image(grid, path)


class SampleGrid(ImageCallback):
    """A grid of model samples: ``z ~ p(z)`` decoded to the likelihood's mean.

    The prior is sampled from the callback's fixed random stream, so successive grids decode
    the same latents (the same sampler noise for an implicit prior) as the model learns.

    Args:
        num_samples: images in the grid.
        nrow: images per row.
        **kwargs: see :class:`ImageCallback`.
    """

    tag = "samples"

    def __init__(self, num_samples: int = 64, nrow: int = 8, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if num_samples <= 0 or nrow <= 0:
            raise ValueError(f"num_samples and nrow must be positive, got {num_samples} and {nrow}")
        self.num_samples, self.nrow = num_samples, nrow

    def make(self, trainer: pl.Trainer, pl_module: Any) -> None:
        self.write_grid(trainer, decode_mean(pl_module, pl_module.prior.sample(self.num_samples)), self.nrow)


class ReconstructionGrid(ImageCallback):
    """Pairs of rows: data examples, then their reconstructions ``mean(p(x|z))``, ``z ~ q(z|x)``.

    Args:
        num_examples: examples shown (two rows of ``nrow`` per ``nrow`` examples).
        nrow: images per row.
        **kwargs: see :class:`ImageCallback`.
    """

    tag = "reconstructions"

    def __init__(self, num_examples: int = 32, nrow: int = 8, **kwargs: Any) -> None:
        super().__init__(num_examples=num_examples, **kwargs)
        if nrow <= 0:
            raise ValueError(f"nrow must be positive, got {nrow}")
        self.nrow = nrow

    def make(self, trainer: pl.Trainer, pl_module: Any) -> None:
        if self.examples is None:
            return
        x = self.examples.to(pl_module.device)
        recon = decode_mean(pl_module, pl_module.sample_posterior(x, 1)[0]).view_as(x)
        rows = []
        for start in range(0, len(x), self.nrow):
            rows += [x[start : start + self.nrow], recon[start : start + self.nrow]]
        self.write_grid(trainer, torch.cat(rows), self.nrow)


class LatentInterpolation(ImageCallback):
    """Rows of decoded straight-line paths between the posterior samples of two data examples.

    Args:
        num_rows: pairs of examples (rows).
        steps: images per row, the two ends included.
        **kwargs: see :class:`ImageCallback`.
    """

    tag = "interpolations"

    def __init__(self, num_rows: int = 8, steps: int = 10, **kwargs: Any) -> None:
        if num_rows <= 0 or steps < 2:
            raise ValueError(f"num_rows must be positive and steps at least 2, got {num_rows} and {steps}")
        super().__init__(num_examples=2 * num_rows, **kwargs)
        self.num_rows, self.steps = num_rows, steps

    def make(self, trainer: pl.Trainer, pl_module: Any) -> None:
        if self.examples is None or len(self.examples) < 2:
            return
        rows = min(self.num_rows, len(self.examples) // 2)
        x = self.examples[: 2 * rows].to(pl_module.device)
        z = pl_module.sample_posterior(x, 1)[0]
        start, end = z[:rows], z[rows : 2 * rows]
        t = torch.linspace(0, 1, self.steps, device=z.device).view(1, -1, 1)
        path = (start[:, None] * (1 - t) + end[:, None] * t).reshape(rows * self.steps, -1)
        self.write_grid(trainer, decode_mean(pl_module, path), self.steps)


class LatentScatter(ImageCallback):
    """For 2-D latents: posterior samples of held-out examples, coloured by their labels — a
    picture of the aggregate posterior ``q(z) = E_x q(z|x)`` against the prior.

    Args:
        num_points: examples encoded (one posterior sample each).
        **kwargs: see :class:`ImageCallback`.
    """

    tag = "latent_scatter"

    def __init__(self, num_points: int = 2000, **kwargs: Any) -> None:
        super().__init__(num_examples=num_points, **kwargs)

    def on_fit_start(self, trainer: pl.Trainer, pl_module: Any) -> None:
        if pl_module.latent_dim != 2:
            rank_zero_warn(
                f"LatentScatter draws 2-D latents only, but latent_dim={pl_module.latent_dim}: it will do "
                "nothing"
            )

    def make(self, trainer: pl.Trainer, pl_module: Any) -> None:
        if self.examples is None or pl_module.latent_dim != 2:
            return
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        z = torch.cat(
            [
                pl_module.sample_posterior(chunk.to(pl_module.device), 1)[0].cpu()
                for chunk in self.examples.split(500)
            ]
        )
        fig, ax = plt.subplots(figsize=(5, 5))
        labels = self.labels if self.labels is not None and len(self.labels) == len(z) else None
        points = ax.scatter(
            z[:, 0], z[:, 1], s=3, alpha=0.6, c=None if labels is None else labels.numpy(), cmap="tab10"
        )
        if labels is not None:
            fig.colorbar(points, ax=ax, fraction=0.046, pad=0.04)
        ax.set(
            title=f"{type(pl_module).__name__}: q(z), step {trainer.global_step}",
            xlabel="z1",
            ylabel="z2",
            aspect="equal",
        )
        fig.tight_layout()
        experiment: Any = getattr(trainer.logger, "experiment", None)
        if hasattr(experiment, "add_figure"):
            experiment.add_figure(f"images/{self.tag}", fig, global_step=trainer.global_step, close=False)
        if self.save_png:
            log_dir = self._log_dir(trainer)
            self.last_paths = [
                os.path.join(log_dir, f"{self.tag}_step{trainer.global_step:06d}.png"),
                os.path.join(log_dir, f"{self.tag}_latest.png"),
            ]
            for path in self.last_paths:
                fig.savefig(path, dpi=80)
        plt.close(fig)
