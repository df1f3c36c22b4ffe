"""What an algorithm is: its parts and their checks, sampling, the optimizer step, its optimizers,
validation and test steps. How it is trained around that (per-rank random streams, atomic
checkpoints, Trainer checks, ...) lives in :mod:`ivi_lightning.training`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Dict, List, Optional, Sequence, Tuple

import pytorch_lightning as pl
import torch
from lightning_fabric.utilities.data import AttributeDict
from torch import Tensor, nn

from ivi_lightning.algorithms.batches import UpdateBatches
from ivi_lightning.algorithms.contracts import check_initialised, check_parts, density_alternative
from ivi_lightning.algorithms.hyperparameters import check_hyperparameters
from ivi_lightning.algorithms.known_model import adopt_known_model
from ivi_lightning.distributions import (
    BernoulliLikelihood,
    DataShape,
    GaussianLikelihood,
    Likelihood,
    Prior,
    StandardNormalPrior,
    as_shape,
    require_log_prob,
)
from ivi_lightning.distributions.support import ParameterSpace
from ivi_lightning.estimators import tile_examples
from ivi_lightning.nets.factory import build_network
from ivi_lightning.training import EMAWeightAveraging, NonFiniteLossError, training_callbacks  # noqa: F401
from ivi_lightning.training.checkpoints import checked_source, record_metadata, restore_metadata
from ivi_lightning.training.logging import is_logging_batch, log_on_logging_batches
from ivi_lightning.training.nonfinite import parameters_of, refuse_or_skip, trainer_of, update_is_finite

#: Every part an algorithm may hold, model first: never hyperparameters, each a network or distribution.
PART_NAMES = ("prior", "likelihood", "encoder", "discriminator", "denoiser", "model_denoiser")
MODEL_PARTS = PART_NAMES[:2]


class ImplicitVI(UpdateBatches, pl.LightningModule):
    """Base class of the algorithms: an encoder ``q(z|x)`` for a model ``p(z) p(x|z)``.

    Subclasses set ``needs_prior_density`` / ``needs_likelihood_density`` and implement
    ``training_step`` as their update schedule.
    Missing parts come from the ``default_*`` hooks, sized from ``latent_dim`` and ``data_shape``;
    they read only ``self.hparams`` (saved first), so a subclass calls ``super().__init__`` first.
    How training runs around this (random streams, checkpoints, checks) is in :mod:`ivi_lightning.training`.

    Args:
        latent_dim: size of ``z``.
        data_shape: shape of one example: an int for vectors, a tuple ``(C, H, W)`` for images.
        prior: ``p(z)``; default ``StandardNormalPrior(latent_dim)``.
        likelihood: ``p(x|z)``; default a ``likelihood_family`` likelihood around an MLP decoder.
        encoder: network ``x -> z`` drawing its own noise; default an ``ImplicitEncoder``.
        learn_model: train the prior's and likelihood's parameters too. With ``False`` the model is
            fixed; parts not given are the data module's known model, adopted at setup.
        likelihood_family: ``"bernoulli"`` (binary data) or ``"gaussian"`` for the default
            likelihood; ``None`` (the default) means ``"bernoulli"``.
        architecture: family of the default networks (see :mod:`ivi_lightning.nets.factory`).
        hidden: hidden layer sizes of the default networks (MLP architectures).
        noise_dim: size of the default implicit encoder's noise.
        noise_injection: where the default encoder takes noise: ``"input"``, ``"hidden"``, ``"both"``.
        noise_components: the default MLP encoder's noise is a uniform mixture of this many
            components (a one-hot index joins the Gaussian noise), so separate components can
            land on separate posterior modes with no mass between them; ``1``: Gaussian only.
        generator_activation: activation of the default MLP encoder and decoder (discriminators and
            denoisers keep SiLU: their input gradients are used, and ReLU's are piecewise constant).
        lr: learning rate of the encoder (and model).
        aux_lr: learning rate of the auxiliary network (discriminator or denoiser).
        aux_steps: auxiliary updates per encoder update.
        updates_per_batch: run the update schedule on this many equal parts of every loaded batch
            in turn: the same training as loading them one by one, with Lightning's cost per
            loaded batch paid once (see the Performance page). Set the data module's
            ``batch_size`` to ``updates_per_batch`` × the update batch size.
        betas: Adam betas of every optimizer.
        grad_clip: clip every network's gradient norm to this value just before each optimizer
            step, after mixed precision has unscaled the gradients (``None``: no clipping).
        on_nonfinite: on a NaN/inf loss or gradient, ``"raise"`` an error naming the network and
            step (the last checkpoint is intact), or ``"skip"`` the update and count it.
    """

    needs_prior_density = False
    needs_likelihood_density = False
    # None only between construction and setup, while a fixed model waits to be adopted.
    prior: Prior
    likelihood: Likelihood
    encoder: Any  # a network x -> z; some also have location_scale(x) or moments(x)

    if TYPE_CHECKING:  # what Lightning returns here, as this class uses it

        @property
        def hparams(self) -> AttributeDict: ...

        def optimizers(self, use_pl_optimizer: bool = True) -> Any: ...

    def __init__(
        self,
        latent_dim: int,
        data_shape: DataShape,
        prior: Optional[Prior] = None,
        likelihood: Optional[Likelihood] = None,
        encoder: Optional[nn.Module] = None,
        learn_model: bool = True,
        likelihood_family: Optional[str] = None,
        architecture: str = "mlp",
        hidden: Sequence[int] = (256, 256),
        noise_dim: int = 8,
        noise_injection: str = "both",
        noise_components: int = 1,
        generator_activation: str = "silu",
        lr: float = 1e-3,
        aux_lr: float = 1e-3,
        aux_steps: int = 1,
        updates_per_batch: int = 1,
        betas: Tuple[float, float] = (0.5, 0.999),
        grad_clip: Optional[float] = None,
        on_nonfinite: str = "raise",
    ) -> None:
        super().__init__()
        self.automatic_optimization = False
        self.save_hyperparameters(ignore=list(PART_NAMES))
        check_hyperparameters(self.hparams)
        self.nonfinite_skips = 0
        self.latent_dim, self.data_shape = int(latent_dim), as_shape(data_shape)
        self.hidden = tuple(hidden)
        # Coordinates of inference (identity unless a simulator data module fits it): saved with the model.
        self.parameter_space = ParameterSpace(self.latent_dim, self.data_shape)
        # With a fixed model and parts left out, the data module's known model is adopted in setup().
        adopt_later = not learn_model and (prior is None or likelihood is None)
        self.prior = prior if prior is not None or adopt_later else self.default_prior()  # type: ignore[assignment]
        self.likelihood = likelihood if likelihood is not None or adopt_later else self.default_likelihood()  # type: ignore[assignment]
        self.encoder = encoder if encoder is not None else self.default_encoder()
        self.check_model()

    # --- parts -------------------------------------------------------------------------------
    def build_network(self, kind: str, **options: Any) -> nn.Module:
        """A default ``kind`` network of this algorithm's ``architecture``, sized to its data and latent."""
        h = self.hparams
        shared = {k: h[k] for k in ("noise_dim", "noise_injection", "noise_components")}
        shared.update(data_shape=self.data_shape, latent_dim=self.latent_dim, hidden=self.hidden)
        shared.update(generator_act=h.generator_activation)
        return build_network(kind, h.architecture, shared=shared, **options)

    def build_context_network(self, kind: str, **options: Any) -> nn.Module:
        """A default ``kind`` MLP taking a location–scale encoder's ``cat(μ, log σ)`` in place of ``x``:
        all its noise ``u`` knows of ``x``. Layers of ``8 · latent_dim`` units, within 64–256."""
        width = min(256, max(64, 8 * self.latent_dim))
        hidden = self.hidden if self.hparams.architecture == "mlp" else (width, width)
        data_shape = (2 * self.latent_dim,)
        return build_network(
            kind, "mlp", data_shape=data_shape, latent_dim=self.latent_dim, hidden=hidden, **options
        )

    def default_prior(self) -> Prior:
        return StandardNormalPrior(self.latent_dim)

    def default_likelihood(self) -> Likelihood:
        decoder = self.build_network("decoder")
        if self.hparams.likelihood_family == "gaussian":
            return GaussianLikelihood(decoder, self.data_shape)
        return BernoulliLikelihood(decoder)

    def default_encoder(self) -> nn.Module:
        return self.build_network("implicit_encoder")

    def check_model(self) -> None:
        """Refuse a part that was not initialised, or a prior or likelihood whose missing density this
        algorithm needs (naming algorithms that need none); see :mod:`~ivi_lightning.algorithms.contracts`."""
        for part in ("prior", "likelihood", "encoder"):
            check_initialised(getattr(self, part, None), part)
        for part, needed in zip(MODEL_PARTS, (self.needs_prior_density, self.needs_likelihood_density)):
            if getattr(self, part) is not None and needed:
                require_log_prob(getattr(self, part), part, type(self).__name__, density_alternative(part))
        if self.prior is not None and getattr(self.prior, "dim", self.latent_dim) != self.latent_dim:
            raise ValueError(
                f"the prior is over {self.prior.dim}-dimensional latents but latent_dim={self.latent_dim}: "
                "set latent_dim to the prior's dimension"
            )

    def setup(self, stage: str) -> None:
        """Check the data module's batches and shapes; adopt its known model where parts were left out."""
        datamodule: Any = getattr(trainer_of(self), "datamodule", None)
        self.check_data_module(datamodule, stage)
        adopt_known_model(self, datamodule)
        check_parts(self)  # the parts' output shapes, on a probe of two examples

    def configure_callbacks(self) -> List[pl.Callback]:
        """Per-rank random streams, atomic checkpoints, Trainer checks: see :mod:`ivi_lightning.training`."""
        return training_callbacks()

    # --- sampling ----------------------------------------------------------------------------
    def sample_posterior(self, x: Tensor, num_samples: int = 1) -> Tensor:
        """``num_samples`` reparameterised draws of ``q(z|x)`` per observation, in the user's units:
        ``[num_samples, batch, latent_dim]``, or ``[num_samples, latent_dim]`` for one unbatched ``x``.

        After training on a simulator data module, ``x`` is as the simulator returns it and the draws
        lie inside the prior's support (the standardisation is undone).

        Args:
            x: observations ``[batch, *data_shape]``, or one observation ``[*data_shape]``.
            num_samples: draws per observation.
        """
        single = tuple(x.shape) == self.data_shape
        batch = x.unsqueeze(0) if single else x
        if tuple(batch.shape[1:]) != self.data_shape:
            raise ValueError(
                f"sample_posterior takes observations of shape {list(self.data_shape)} or "
                f"[batch, {', '.join(map(str, self.data_shape))}], got {list(x.shape)}"
            )
        space: Any = self.parameter_space
        z = space.to_parameter(self.draw_posterior(space.standardize(batch.to(space.data_mean)), num_samples))
        return z[:, 0] if single else z

    def draw_posterior(self, x: Tensor, num_samples: int = 1) -> Tensor:
        """``num_samples`` draws of ``q(z|x)`` per example in the algorithm's own coordinates:
        ``[num_samples, batch, latent_dim]`` (what the training schedules use)."""
        repeated = tile_examples(x, num_samples)
        return self.encoder(repeated).view(num_samples, x.shape[0], self.latent_dim)

    def sample_model(self, num_samples: int) -> Tuple[Tensor, Tensor]:
        """Joint samples ``(x, z) ~ p(z) p(x|z)``."""
        z = self.prior.sample(num_samples)
        return self.likelihood.sample(z), z

    # --- optimisation ------------------------------------------------------------------------
    def optimize(self, optimizer: Any, loss: Tensor, name: Optional[str] = None) -> bool:
        """One manual step of ``optimizer`` on ``loss``; ``False`` when a non-finite update was skipped.

        A NaN/inf loss or gradient (agreed between ranks) raises :class:`NonFiniteLossError` naming
        ``name`` (default: the networks the optimizer trains), or with ``on_nonfinite="skip"`` drops
        the update. Clipping happens in :meth:`on_before_optimizer_step`.
        """
        optimizer.zero_grad(set_to_none=True)
        self.manual_backward(loss)
        if update_is_finite(self, parameters_of(optimizer), loss):
            optimizer.step()
            return True
        optimizer.zero_grad(set_to_none=True)
        refuse_or_skip(self, optimizer, loss, name)
        return False

    def on_before_optimizer_step(self, optimizer: Any) -> None:
        """Clip the gradient norm to ``grad_clip``: called inside the step, after AMP's unscaling."""
        if self.hparams.grad_clip is not None:
            self.clip_gradients(
                optimizer, gradient_clip_val=self.hparams.grad_clip, gradient_clip_algorithm="norm"
            )

    def logging_step(self) -> bool:
        """Whether this training step's metrics are logged (see "
        ":func:`~ivi_lightning.training.logging.is_logging_batch`)."""
        trainer = trainer_of(self)
        return trainer is None or is_logging_batch(trainer)

    def log_metrics(self, prefix: str, metrics: Dict[str, Tensor], **kwargs: Any) -> None:
        """``log_dict`` of ``metrics`` as ``prefix/name`` on :meth:`logging_step` batches (``kwargs`` to "
        "``log_dict``)."""
        log_on_logging_batches(self, prefix, metrics, **kwargs)

    def model_parameters(self) -> List[nn.Parameter]:
        """Parameters of the prior and likelihood when the model is learned, else none."""
        if not self.hparams.learn_model:
            return []
        return [p for part in (self.prior, self.likelihood) if part is not None for p in part.parameters()]

    def encoder_parameters(self) -> List[nn.Parameter]:
        return list(self.encoder.parameters())

    def auxiliary_networks(self) -> List[nn.Module]:
        """Networks trained by the auxiliary optimizer (discriminator, denoiser); none by default."""
        return []

    def adam(self, params: List[nn.Parameter], lr: float) -> torch.optim.Optimizer:
        """Adam, fused (one kernel over all parameters) where torch has that for every parameter:
        the same update as the default per-tensor loop up to rounding (see the Performance page)."""
        fused = all(p.is_floating_point() and p.device.type in ("cpu", "cuda") for p in params) or None
        return torch.optim.Adam(params, lr=lr, betas=tuple(self.hparams.betas), fused=fused)

    def configure_optimizers(self) -> Any:
        """One Adam for encoder (+ model), one for the auxiliary networks if there are any."""
        variational = self.adam(self.encoder_parameters() + self.model_parameters(), self.hparams.lr)
        auxiliary = [p for net in self.auxiliary_networks() for p in net.parameters()]
        return (variational, self.adam(auxiliary, self.hparams.aux_lr)) if auxiliary else variational

    # --- checkpoints ---------------------------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: Dict[str, Any]) -> None:
        """Record the algorithm and its skipped-update count (the random streams: ``RankRandomStreams``)."""
        record_metadata(checkpoint, self)

    def on_load_checkpoint(self, checkpoint: Dict[str, Any]) -> None:
        """Refuse another algorithm's checkpoint, before its weights are loaded; restore the skip count."""
        restore_metadata(checkpoint, self, _expected_algorithm(type(self)))

    @classmethod
    def load_from_checkpoint(cls, checkpoint_path: Any, *args: Any, **kwargs: Any) -> Any:
        """Lightning's ``load_from_checkpoint``, with clear errors for a missing or corrupted file
        and for a checkpoint written by another algorithm."""
        source: Any = checked_source(checkpoint_path, _expected_algorithm(cls))
        return super().load_from_checkpoint(source, *args, **kwargs)

    # --- evaluation --------------------------------------------------------------------------
    def elbo_estimate(self, x: Tensor) -> Optional[Tensor]:
        """Per-example ELBO estimate where the algorithm has one (plug-in, not a bound), else ``None``."""
        return None

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        self._log_elbo(batch, "val")

    def test_step(self, batch: Any, batch_idx: int) -> None:
        """Logs ``test/elbo`` where the algorithm has an estimate; add ``AISCallback`` for ``log p(x)``."""
        self._log_elbo(batch, "test")

    def _log_elbo(self, batch: Any, stage: str) -> None:
        elbo = self.elbo_estimate(self.batch_data(batch))
        if elbo is not None:
            self.log(f"{stage}/elbo", elbo.mean(), sync_dist=True, prog_bar=stage == "val")


def detached(tensors: Optional[Tuple[Tensor, Tensor]]) -> Optional[Tuple[Tensor, Tensor]]:
    """``tensors`` cut from their graph (``None`` stays ``None``): e.g. a location–scale encoder's
    ``(μ, σ)``, computed once per update: with its graph for the encoder, detached for the auxiliary net."""
    return None if tensors is None else (tensors[0].detach(), tensors[1].detach())


def _expected_algorithm(cls: type) -> Optional[str]:
    """The algorithm a checkpoint loaded by ``cls`` must come from (``None`` for the base class: any)."""
    return None if cls is ImplicitVI else cls.__name__
