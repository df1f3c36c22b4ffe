"""What an algorithm is: its parts and their checks, sampling, the optimizer step, its optimizers,
validation and test steps. The rest is named where it lives: batches, part contracts, hyperparameters
in :mod:`ivi_lightning.algorithms`; how it is trained in :mod:`ivi_lightning.training`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, List, Optional, Sequence, Tuple

import pytorch_lightning as pl
import torch
from torch import Tensor, nn

from ivi_lightning.algorithms.batches import UpdateBatches
from ivi_lightning.algorithms.contracts import PART_NAMES, check_model, check_parts
from ivi_lightning.algorithms.hyperparameters import check_hyperparameters, default_network
from ivi_lightning.algorithms.known_model import adopt_known_model
from ivi_lightning.distributions import (
    BernoulliLikelihood,
    GaussianLikelihood,
    Likelihood,
    Prior,
    StandardNormalPrior,
)
from ivi_lightning.distributions.support import ParameterSpace, rejection_sample
from ivi_lightning.estimators import tile_examples
from ivi_lightning.shapes import DataShape, as_shape
from ivi_lightning.training import training_callbacks
from ivi_lightning.training.checkpoints import CheckpointRecords, builtin_hyperparameters
from ivi_lightning.training.logging import CadencedLogging
from ivi_lightning.training.nonfinite import parameters_of, refuse_or_skip, trainer_of, update_is_finite


class ImplicitVI(UpdateBatches, CadencedLogging, CheckpointRecords):
    """Base class of the algorithms: an encoder ``q(z|x)`` for a model ``p(z) p(x|z)``.

    Subclasses set ``needs_prior_density`` / ``needs_likelihood_density`` and implement
    ``training_step`` as their update schedule.
    Missing parts come from the ``default_*`` hooks, sized from ``latent_dim`` and ``data_shape``;
    they read only ``self.hparams`` (saved first), so a subclass calls ``super().__init__`` first.
    Metrics go through ``log_metrics`` (:class:`~ivi_lightning.training.logging.CadencedLogging`);
    checkpoints name the algorithm (:class:`~ivi_lightning.training.checkpoints.CheckpointRecords`).

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
        support_mode: with a simulator data module whose prior is bounded, ``"transform"`` infers
            in ``biject_to``'s unconstrained coordinates (every draw inside the support), ``"reject"``
            in the z-scored parameters, redrawing posterior samples outside the support (as sbi's
            NPE); see :class:`~ivi_lightning.distributions.ParameterSpace`.
    """

    needs_prior_density = False
    needs_likelihood_density = False
    # None only between construction and setup, while a fixed model waits to be adopted.
    prior: Prior
    likelihood: Likelihood
    encoder: Any  # a network x -> z; some also have location_scale(x) or moments(x)

    if TYPE_CHECKING:  # Lightning types this as one optimizer or a list; the schedules unpack theirs

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
        support_mode: str = "transform",
    ) -> None:
        super().__init__()
        self.automatic_optimization = False
        self.save_hyperparameters(ignore=list(PART_NAMES))
        builtin_hyperparameters(self)  # a numpy number there would make every checkpoint unloadable
        check_hyperparameters(self.hparams)
        self.nonfinite_skips = 0  # updates dropped under on_nonfinite="skip", saved in checkpoints
        self.latent_dim, self.data_shape = int(latent_dim), as_shape(data_shape)
        # Coordinates of inference (identity unless a simulator data module fits it): saved with the model.
        self.parameter_space = ParameterSpace(self.latent_dim, self.data_shape, support_mode)
        # With a fixed model and parts left out, the data module's known model is adopted in setup().
        adopt_later = not learn_model and (prior is None or likelihood is None)
        if prior is None and not adopt_later:
            prior = self.default_prior()
        self.prior = prior  # type: ignore[assignment]  # None until adopted
        if likelihood is None and not adopt_later:  # after self.prior: a default may read it
            likelihood = self.default_likelihood()
        self.likelihood = likelihood  # type: ignore[assignment]
        self.encoder = encoder if encoder is not None else self.default_encoder()
        check_model(self)

    # --- parts -------------------------------------------------------------------------------
    def build_network(self, kind: str, **options: Any) -> nn.Module:
        """A default ``kind`` network sized by this algorithm's hyperparameters (see
        :func:`~ivi_lightning.algorithms.hyperparameters.default_network`)."""
        return default_network(self.hparams, kind, **options)

    def default_prior(self) -> Prior:
        return StandardNormalPrior(self.latent_dim)

    def default_likelihood(self) -> Likelihood:
        decoder = self.build_network("decoder")
        if self.hparams.likelihood_family == "gaussian":
            return GaussianLikelihood(decoder, self.data_shape)
        return BernoulliLikelihood(decoder)

    def default_encoder(self) -> nn.Module:
        return self.build_network("implicit_encoder")

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
        lie inside the prior's support (the standardisation is undone; with ``support_mode="reject"``
        draws outside it are redrawn).

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
        x_std = space.standardize(batch.to(space.data_mean))
        draw = lambda n: space.to_parameter(self.draw_posterior(x_std, n))
        theta = rejection_sample(draw, space.inside, num_samples) if space.rejects else draw(num_samples)
        return theta[:, 0] if single else theta

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

        A NaN/inf loss or gradient (agreed between ranks) raises ``NonFiniteLossError`` naming ``name``
        (default: the networks the optimizer trains), or with ``on_nonfinite="skip"`` drops the update.
        Clipping happens in :meth:`on_before_optimizer_step`.
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
        clip = self.hparams.grad_clip
        if clip is not None:
            self.clip_gradients(optimizer, gradient_clip_val=clip, gradient_clip_algorithm="norm")

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
