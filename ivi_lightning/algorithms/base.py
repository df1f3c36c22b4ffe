"""What every algorithm shares: building default parts, the known-model hand-over from a data
module, input checks, posterior sampling, the optimizer step and logging."""
from __future__ import annotations

from typing import Any, Dict, Optional, Sequence, Tuple

import pytorch_lightning as pl
import torch
from torch import Tensor, nn

from ivi_lightning.distributions import (
    BernoulliLikelihood,
    DataShape,
    GaussianLikelihood,
    Likelihood,
    Prior,
    StandardNormalPrior,
    as_shape,
    has_log_prob,
)
from ivi_lightning.nets.factory import build_network

PART_NAMES = ("prior", "likelihood", "encoder", "discriminator", "denoiser")


class ImplicitVI(pl.LightningModule):
    """Base class of the algorithms: an encoder ``q(z|x)`` for a model ``p(z) p(x|z)``.

    Subclasses set ``needs_prior_density`` / ``needs_likelihood_density`` (and ``alternative``,
    named in the error when a part lacks a density) and implement ``training_step`` as their
    update schedule. Missing parts get default networks sized from ``latent_dim`` and
    ``data_shape``.

    Args:
        latent_dim: size of ``z``.
        data_shape: shape of one example: an int for vectors, a tuple ``(C, H, W)`` for images.
        prior: ``p(z)``; default ``StandardNormalPrior(latent_dim)``.
        likelihood: ``p(x|z)``; default a ``likelihood_family`` likelihood around an MLP decoder.
        encoder: network ``x -> z`` drawing its own noise; default an ``ImplicitEncoder``.
        learn_model: train the prior's and likelihood's parameters too. With ``False`` the model
            is fixed (inference in a known model); if ``prior``/``likelihood`` are not given, the
            data module's known model (its ``prior`` and ``likelihood``) is adopted at setup.
        likelihood_family: ``"bernoulli"`` (binary data) or ``"gaussian"`` for the default likelihood.
        architecture: family of the default networks (``"mlp"``; image families register more,
            see :mod:`ivi_lightning.nets.factory`).
        hidden: hidden layer sizes of the default networks (MLP architectures).
        noise_dim: size of the default implicit encoder's noise.
        noise_injection: where the default encoder takes noise: ``"input"``, ``"hidden"``, ``"both"``.
        lr: learning rate of the encoder (and model).
        aux_lr: learning rate of the auxiliary network (discriminator or denoiser).
        aux_steps: auxiliary updates per encoder update.
        betas: Adam betas of every optimizer.
        grad_clip: clip every network's gradient norm to this value (``None``: no clipping).
    """

    needs_prior_density = False
    needs_likelihood_density = False
    alternative = ""

    def __init__(
        self,
        latent_dim: int,
        data_shape: DataShape,
        prior: Optional[Prior] = None,
        likelihood: Optional[Likelihood] = None,
        encoder: Optional[nn.Module] = None,
        learn_model: bool = True,
        likelihood_family: str = "bernoulli",
        architecture: str = "mlp",
        hidden: Sequence[int] = (256, 256),
        noise_dim: int = 8,
        noise_injection: str = "both",
        lr: float = 1e-3,
        aux_lr: float = 1e-3,
        aux_steps: int = 1,
        betas: Tuple[float, float] = (0.5, 0.999),
        grad_clip: Optional[float] = None,
    ) -> None:
        super().__init__()
        self.automatic_optimization = False
        self.save_hyperparameters(ignore=list(PART_NAMES))
        if int(latent_dim) <= 0:
            raise ValueError(f"latent_dim must be positive, got {latent_dim}")
        for name, value in (("lr", lr), ("aux_lr", aux_lr), ("aux_steps", aux_steps)):
            if value <= 0:
                raise ValueError(f"{name} must be positive, got {value}")
        if likelihood_family not in ("bernoulli", "gaussian"):
            raise ValueError(f"likelihood_family must be 'bernoulli' or 'gaussian', got {likelihood_family!r}")
        self.latent_dim, self.data_shape = int(latent_dim), as_shape(data_shape)
        self.hidden = tuple(hidden)

        # With a fixed model and parts left out, the data module's known model is adopted in setup().
        adopt_later = not learn_model and (prior is None or likelihood is None)
        self.prior: Optional[Prior] = prior if prior is not None or adopt_later else StandardNormalPrior(latent_dim)
        self.likelihood: Optional[Likelihood] = likelihood
        if likelihood is None and not adopt_later:
            decoder = self.build_network("decoder")
            self.likelihood = BernoulliLikelihood(decoder) if likelihood_family == "bernoulli" else GaussianLikelihood(decoder, data_shape)
        self.encoder = encoder if encoder is not None else self.default_encoder()
        self._check_model()

    # --- construction -------------------------------------------------------------------------
    def build_network(self, kind: str, **options: Any) -> nn.Module:
        """A default ``kind`` network of this algorithm's ``architecture``, sized to its data and latent."""
        h = self.hparams
        defaults = dict(data_shape=self.data_shape, latent_dim=self.latent_dim, hidden=self.hidden, noise_dim=h.noise_dim, noise_injection=h.noise_injection)
        return build_network(kind, h.architecture, **{**defaults, **options})

    def default_encoder(self) -> nn.Module:
        return self.build_network("implicit_encoder")

    def _check_model(self) -> None:
        """Refuse a prior or likelihood whose missing density this algorithm needs."""
        name = type(self).__name__
        for part, needed in (("prior", self.needs_prior_density), ("likelihood", self.needs_likelihood_density)):
            value = getattr(self, part)
            if value is not None and needed and not has_log_prob(value):
                hint = f" Use {self.alternative}, which needs no density of the {part}." if self.alternative else ""
                raise ValueError(f"{name} needs log_prob of the {part}, but {type(value).__name__} is implicit (sample only).{hint}")
        if self.prior is not None and getattr(self.prior, "dim", self.latent_dim) != self.latent_dim:
            raise ValueError(
                f"the prior is over {self.prior.dim}-dimensional latents but latent_dim={self.latent_dim}: "
                "set latent_dim to the prior's dimension"
            )

    def setup(self, stage: str) -> None:
        self._check_strategy()
        datamodule = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        if datamodule is not None and hasattr(datamodule, "data_shape"):
            data_shape = as_shape(datamodule.data_shape)
            if data_shape != self.data_shape:
                raise ValueError(
                    f"the data module gives examples of shape {data_shape} but {type(self).__name__} was built for "
                    f"data_shape={self.data_shape}: set data_shape={list(data_shape)} (the CLI links it for you)"
                )
        if self.prior is None or self.likelihood is None:
            known = {part: getattr(datamodule, part, None) for part in ("prior", "likelihood")}
            if known["prior"] is None or known["likelihood"] is None:
                raise ValueError(
                    f"{type(self).__name__}(learn_model=False) needs a fixed model: pass prior= and likelihood=, "
                    "or use a data module with a known model (e.g. Toy2DDataModule('explaining_away'))"
                )
            self.prior = self.prior or known["prior"]
            self.likelihood = self.likelihood or known["likelihood"]
            self._check_model()

    def _check_strategy(self) -> None:
        """Alternating optimizers leave some networks unused in every backward: DDP must know."""
        if self._trainer is None:
            return
        from pytorch_lightning.strategies import DDPStrategy

        strategy = self.trainer.strategy
        if isinstance(strategy, DDPStrategy) and not getattr(strategy, "_ddp_kwargs", {}).get("find_unused_parameters", False):
            raise ValueError(
                f"{type(self).__name__} alternates optimizers, so each backward leaves some networks unused and plain DDP "
                "fails; use strategy='ddp_find_unused_parameters_true' (or DDPStrategy(find_unused_parameters=True))"
            )

    def on_train_start(self) -> None:
        # seed_everything gives every rank the same random stream; offset it by rank so each
        # process draws its own encoder noise, prior samples and corruption, reproducibly.
        if self.trainer.world_size > 1:
            torch.manual_seed(torch.initial_seed() + 1_000_003 * self.global_rank)

    def model_parameters(self) -> list:
        """Parameters of the prior and likelihood when the model is learned, else none."""
        if not self.hparams.learn_model:
            return []
        return [p for part in (self.prior, self.likelihood) if part is not None for p in part.parameters()]

    def encoder_parameters(self) -> list:
        return list(self.encoder.parameters())

    def auxiliary_networks(self) -> list:
        """Networks trained by the auxiliary optimizer (discriminator, denoiser); none by default."""
        return []

    def _adam(self, params: list, lr: float) -> torch.optim.Optimizer:
        return torch.optim.Adam(params, lr=lr, betas=tuple(self.hparams.betas))

    def configure_optimizers(self):
        """One Adam for encoder (+ model), one for the auxiliary networks if there are any."""
        variational = self._adam(self.encoder_parameters() + self.model_parameters(), self.hparams.lr)
        auxiliary = [p for net in self.auxiliary_networks() for p in net.parameters()]
        return (variational, self._adam(auxiliary, self.hparams.aux_lr)) if auxiliary else variational

    # --- data --------------------------------------------------------------------------------
    def batch_data(self, batch: Any) -> Tensor:
        """The data tensor ``x`` of a batch (``x`` or ``(x, label, ...)``), shape-checked."""
        x = batch[0] if isinstance(batch, (tuple, list)) else batch
        if tuple(x.shape[1:]) != self.data_shape:
            raise ValueError(
                f"{type(self).__name__} expects batches of shape [batch, {', '.join(map(str, self.data_shape))}] "
                f"(data_shape={self.data_shape}) but got {list(x.shape)}: set data_shape to match the data"
            )
        return x

    # --- sampling ----------------------------------------------------------------------------
    def sample_posterior(self, x: Tensor, num_samples: int = 1) -> Tensor:
        """``num_samples`` draws of ``q(z|x)`` per example: ``[num_samples, batch, latent_dim]``.

        Differentiable (reparameterised); wrap in ``torch.no_grad()`` for evaluation.
        """
        repeated = x.unsqueeze(0).expand(num_samples, *x.shape).reshape(num_samples * x.shape[0], *x.shape[1:])
        return self.encoder(repeated).view(num_samples, x.shape[0], self.latent_dim)

    def sample_model(self, num_samples: int) -> Tuple[Tensor, Tensor]:
        """Joint samples ``(x, z) ~ p(z) p(x|z)``."""
        z = self.prior.sample(num_samples)
        return self.likelihood.sample(z), z

    # --- optimisation ------------------------------------------------------------------------
    def optimize(self, optimizer: Any, loss: Tensor) -> None:
        """One manual step of ``optimizer`` on ``loss``, clipping after the backward (and unscaling)."""
        optimizer.zero_grad(set_to_none=True)
        self.manual_backward(loss)
        if self.hparams.grad_clip is not None:
            self.clip_gradients(optimizer, gradient_clip_val=self.hparams.grad_clip, gradient_clip_algorithm="norm")
        optimizer.step()

    def logging_step(self) -> bool:
        """Whether this training step's metrics are logged (see :meth:`log_metrics`).

        True on the batches whose metrics the Trainer writes to its loggers (every
        ``log_every_n_steps`` *batches*: in manual optimization ``global_step`` counts every
        optimizer's steps, the Trainer's logging cadence counts batches), on the first batch (so
        the progress bar and ``trainer.callback_metrics`` fill at once), under ``fast_dev_run``
        and outside training.
        """
        trainer = self._trainer
        if trainer is None or trainer.fast_dev_run or not trainer.training:
            return True
        return trainer._logger_connector.should_update_logs or trainer.fit_loop.epoch_loop._batches_that_stepped == 0

    def log_metrics(self, prefix: str, metrics: Dict[str, Tensor], **kwargs: Any) -> None:
        """``log_dict`` of ``metrics`` as ``prefix/name``, on :meth:`logging_step` batches only.

        Lightning's per-call logging machinery costs about as much as a small network's step, so
        training metrics are handed over only on the batches the loggers write; in between,
        ``trainer.callback_metrics`` and the progress bar keep the last logged values. Use
        ``Trainer(log_every_n_steps=1)`` for every batch.

        Args:
            prefix: name prefix, e.g. ``"train"``.
            metrics: name -> scalar tensor.
            **kwargs: passed to ``log_dict`` (e.g. ``prog_bar=True``).
        """
        if not self.logging_step():
            return
        values = {f"{prefix}/{k}": v.detach() for k, v in metrics.items()}
        if values and not kwargs.get("sync_dist", False):
            # One device-to-host copy per logged batch: Lightning turns progress-bar metrics into
            # Python numbers on *every* batch, which on a GPU would otherwise synchronise each time.
            values = dict(zip(values, torch.stack([v.float() for v in values.values()]).cpu().unbind()))
        self.log_dict(values, **kwargs)

    # --- evaluation --------------------------------------------------------------------------
    def elbo_estimate(self, x: Tensor) -> Optional[Tensor]:
        """Per-example ELBO estimate where the algorithm has one (plug-in, not a bound), else ``None``."""
        return None

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        x = self.batch_data(batch)
        elbo = self.elbo_estimate(x)
        if elbo is not None:
            self.log("val/elbo", elbo.mean(), sync_dist=True, prog_bar=True)
