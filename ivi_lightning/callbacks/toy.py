"""Scoring a 2-D-latent posterior against the exact one during training (rank 0, no collectives)."""

from __future__ import annotations

import os
from typing import Any, Dict, Optional

import pytorch_lightning as pl
import torch
from pytorch_lightning.utilities import rank_zero_only, rank_zero_warn
from torch import Tensor

from ivi_lightning.callbacks.common import local_log_dir, private_random_stream
from ivi_lightning.distributions import has_log_prob
from ivi_lightning.evaluation import exact_posterior_grid, grid_log_marginal, posterior_js


class ExactPosteriorCallback(pl.Callback):
    """Logs the JS divergence between ``q(z|x)`` and the exact posterior of the current model at
    the data module's ``evaluation_points``, the model's exact ``log p(x)`` there (for
    ``four_points`` their mean is the log-likelihood, optimum ``−log 4``), and a PNG of
    samples over the exact posterior's contours (to TensorBoard and the log directory).

    Runs on global rank 0 only and writes through the logger directly, so it never makes a
    collective call that other ranks would wait on.

    Args:
        every_n_steps: evaluate every this many optimizer steps (``trainer.global_step``, which
            counts the steps of every optimizer), and at the end of training.
        num_samples: posterior samples per observation for the JS histogram.
        plot: also write the PNG.
        seed: seed of the evaluation's private random stream: training's stream is left untouched,
            so a run with this callback resumes exactly, and the step it last evaluated is saved
            in checkpoints.
    """

    def __init__(
        self, every_n_steps: int = 1000, num_samples: int = 50000, plot: bool = True, seed: int = 0
    ) -> None:
        if every_n_steps <= 0 or num_samples <= 0:
            raise ValueError(
                f"every_n_steps and num_samples must be positive, got {every_n_steps} and {num_samples}"
            )
        self.every_n_steps, self.num_samples, self.plot, self.seed = every_n_steps, num_samples, plot, seed
        self.last: Dict[str, float] = {}
        self._last_step = -1

    @property
    def state_key(self) -> str:
        return f"{type(self).__qualname__}{{'every_n_steps': {self.every_n_steps}}}"

    def state_dict(self) -> Dict[str, Any]:
        """The step last evaluated (so a resumed run does not evaluate again) and its metrics."""
        return {"last_step": self._last_step, "last": dict(self.last)}

    def load_state_dict(self, state_dict: Dict[str, Any]) -> None:
        self._last_step = int(state_dict.get("last_step", -1))
        self.last = dict(state_dict.get("last", {}))

    def _usable(self, trainer: pl.Trainer, pl_module: Any) -> Optional[Tensor]:
        points = getattr(getattr(trainer, "datamodule", None), "evaluation_points", None)
        if points is None or len(points) == 0 or pl_module.latent_dim != 2:
            return None
        if not (has_log_prob(pl_module.prior) and has_log_prob(pl_module.likelihood)):
            return None
        return points.to(pl_module.device)

    def on_fit_start(self, trainer: pl.Trainer, pl_module: Any) -> None:
        if self._usable(trainer, pl_module) is None:
            rank_zero_warn(
                "ExactPosteriorCallback: needs a 2-D latent, a model with densities and a data module with "
                "evaluation_points; it will do nothing"
            )

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        # global_step counts every optimizer's steps, so it can jump past a multiple.
        if trainer.global_step // self.every_n_steps > max(self._last_step, 0) // self.every_n_steps:
            self.evaluate(trainer, pl_module)

    def on_train_end(self, trainer: pl.Trainer, pl_module: Any) -> None:
        if trainer.global_step != self._last_step:
            self.evaluate(trainer, pl_module)

    @rank_zero_only
    def evaluate(self, trainer: pl.Trainer, pl_module: Any) -> None:
        self._last_step = trainer.global_step
        points = self._usable(trainer, pl_module)
        if points is None:
            return
        extent = float(getattr(getattr(trainer, "datamodule", None), "latent_extent", 4.0))
        was_training = pl_module.training
        pl_module.eval()
        with private_random_stream(pl_module.device, self.seed), torch.no_grad():
            js = posterior_js(
                pl_module.sample_posterior,
                pl_module.prior,
                pl_module.likelihood,
                points,
                self.num_samples,
                extent,
            )
            loglik = grid_log_marginal(pl_module.prior, pl_module.likelihood, points, extent)
        metrics = {f"exact/js_x{i}": float(v) for i, v in enumerate(js)}
        metrics.update({"exact/js_mean": float(js.mean()), "exact/log_likelihood": float(loglik.mean())})
        self.last = metrics
        if trainer.logger is not None:
            trainer.logger.log_metrics(metrics, step=trainer.global_step)
        if self.plot:
            with private_random_stream(pl_module.device, self.seed + 1), torch.no_grad():
                self._plot(trainer, pl_module, points, js, extent)
        pl_module.train(was_training)

    def _plot(self, trainer, pl_module, points: Tensor, js: Tensor, extent: float) -> None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        exact = exact_posterior_grid(pl_module.prior, pl_module.likelihood, points, extent, 128)
        samples = pl_module.sample_posterior(points, 2000).cpu()
        fig, axes = plt.subplots(1, len(points), figsize=(3.2 * len(points), 3.4), squeeze=False)
        for i, ax in enumerate(axes[0]):
            ax.contourf(
                exact[i].T.numpy(), levels=12, extent=[-extent, extent, -extent, extent], cmap="Blues"
            )
            ax.scatter(samples[:, i, 0], samples[:, i, 1], s=1, alpha=0.3, c="tab:red")
            label = ", ".join(f"{v:.2g}" for v in points[i].flatten().tolist())
            ax.set(
                xlim=(-extent, extent),
                ylim=(-extent, extent),
                title=f"x=({label})  JS={js[i]:.3f}",
                aspect="equal",
            )
        fig.suptitle(
            f"{type(pl_module).__name__}: q(z|x) samples over exact posterior, step {trainer.global_step}"
        )
        fig.tight_layout()
        log_dir = local_log_dir(trainer)  # not trainer.log_dir: it is a collective call
        fig.savefig(os.path.join(log_dir, f"posterior_step{trainer.global_step:06d}.png"), dpi=80)
        fig.savefig(os.path.join(log_dir, "posterior_latest.png"), dpi=80)
        experiment: Any = getattr(trainer.logger, "experiment", None)
        if hasattr(experiment, "add_figure"):
            experiment.add_figure("exact/posterior", fig, global_step=trainer.global_step)
        plt.close(fig)
