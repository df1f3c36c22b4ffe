"""What every algorithm shares: building default parts, the known-model hand-over from a data
module, input checks, posterior sampling, the optimizer step and logging."""
from __future__ import annotations

import atexit
import io
import os
import random
import warnings
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.core.optimizer import LightningOptimizer
from pytorch_lightning.plugins.precision import Precision
from pytorch_lightning.profilers import PassThroughProfiler
from pytorch_lightning.strategies import SingleDeviceStrategy
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
from ivi_lightning.distributions.support import LatentPrior, ParameterSpace, SimulatorLikelihood, as_prior, support_of
from ivi_lightning.checkpoint import AtomicCheckpointIO, CheckpointError, read_checkpoint
from ivi_lightning.data import Simulations
from ivi_lightning.estimators import tile_examples
from ivi_lightning.nets.factory import build_network

PART_NAMES = ("prior", "likelihood", "encoder", "discriminator", "denoiser")
NONFINITE_ACTIONS = ("raise", "skip")
CUDA_PROBE_ENV = "PYTORCH_NVML_BASED_CUDA_CHECK"
# Lightning's EMA callback (pytorch-lightning >= 2.6; None before): checked by ImplicitVI, used by the MNIST table.
EMAWeightAveraging = getattr(pl.callbacks, "EMAWeightAveraging", None)
RANK_SEED_STRIDE = 1_000_003  # rank r's noise stream is seeded with seed + RANK_SEED_STRIDE * r


class NonFiniteLossError(FloatingPointError):
    """A loss or gradient became NaN/inf: raised by :meth:`ImplicitVI.optimize` with ``on_nonfinite="raise"``."""


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
        likelihood_family: ``"bernoulli"`` (binary data) or ``"gaussian"`` for the default
            likelihood; ``None`` (the default) means ``"bernoulli"`` when a default likelihood is built.
        architecture: family of the default networks (``"mlp"``; image families register more,
            see :mod:`ivi_lightning.nets.factory`).
        hidden: hidden layer sizes of the default networks (MLP architectures).
        noise_dim: size of the default implicit encoder's noise.
        noise_injection: where the default encoder takes noise: ``"input"``, ``"hidden"``, ``"both"``.
        noise_components: the default MLP encoder's noise is a uniform mixture of this many
            components (a one-hot index joins the Gaussian noise), so separate components can
            land on separate posterior modes with no mass between them; ``1``: Gaussian only.
        generator_activation: activation of the default MLP encoder and decoder (the networks that
            produce samples). Discriminators and denoisers keep SiLU: their input gradients are
            used, and ReLU's are piecewise constant. ``"relu"`` gave sharper regions on
            ``four_points`` (log-likelihood −1.408 vs −1.412, seed 0).
        lr: learning rate of the encoder (and model).
        aux_lr: learning rate of the auxiliary network (discriminator or denoiser).
        aux_steps: auxiliary updates per encoder update.
        updates_per_batch: split every loaded batch into this many equal update batches and run
            the update schedule on each in turn. Same training as loading the update batches one
            by one (same examples in the same order, same noise), but Lightning's fixed cost per
            loaded batch (~0.3 ms of CPU) is paid once per ``updates_per_batch`` schedules: worth
            it for networks whose step takes a few milliseconds (the 2-D toys). Set the data
            module's ``batch_size`` to ``updates_per_batch`` × the update batch size. Logging
            (every ``log_every_n_steps`` loaded batches) reports the last update of a batch.
        betas: Adam betas of every optimizer.
        grad_clip: clip every network's gradient norm to this value (``None``: no clipping). Applied
            just before each optimizer step, after mixed precision has unscaled the gradients.
        on_nonfinite: what a NaN/inf loss or gradient does: ``"raise"`` stops training with an
            error naming the network and step (the last checkpoint, written atomically, is kept);
            ``"skip"`` drops that update and counts it (``train/nonfinite_skips``).
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
        if on_nonfinite not in NONFINITE_ACTIONS:
            raise ValueError(f"on_nonfinite must be one of {', '.join(NONFINITE_ACTIONS)}, got {on_nonfinite!r}")
        if grad_clip is not None and grad_clip <= 0:
            raise ValueError(f"grad_clip must be positive (or None for no clipping), got {grad_clip}")
        self.nonfinite_skips = 0
        self._rng_to_restore: Optional[List[Dict[str, Any]]] = None
        self._optimizer_names: Dict[int, str] = {}
        self._params_of_optimizer: Dict[Tuple[int, int], List[Tensor]] = {}
        self._cuda_probe_env: Optional[str] = None
        self._direct_updates = False  # set by on_fit_start: see _hooks_are_pass_through
        if int(latent_dim) <= 0:
            raise ValueError(f"latent_dim must be positive, got {latent_dim}")
        for name, value in (("lr", lr), ("aux_lr", aux_lr), ("aux_steps", aux_steps), ("updates_per_batch", updates_per_batch)):
            if value <= 0:
                raise ValueError(f"{name} must be positive, got {value}")
        if likelihood_family not in (None, "bernoulli", "gaussian"):
            raise ValueError(f"likelihood_family must be 'bernoulli' or 'gaussian', got {likelihood_family!r}")
        self.latent_dim, self.data_shape = int(latent_dim), as_shape(data_shape)
        self.hidden = tuple(hidden)
        # Coordinates of inference (identity unless a simulator data module fits it): saved with the model.
        self.parameter_space = ParameterSpace(self.latent_dim, self.data_shape)

        # With a fixed model and parts left out, the data module's known model is adopted in setup().
        adopt_later = not learn_model and (prior is None or likelihood is None)
        self.prior: Optional[Prior] = prior if prior is not None or adopt_later else StandardNormalPrior(latent_dim)
        self.likelihood: Optional[Likelihood] = likelihood
        if likelihood is None and not adopt_later:
            decoder = self.build_network("decoder")
            self.likelihood = GaussianLikelihood(decoder, data_shape) if likelihood_family == "gaussian" else BernoulliLikelihood(decoder)
        self.encoder = encoder if encoder is not None else self.default_encoder()
        self._check_model()

    def __setattr__(self, name: str, value: Any) -> None:
        # Lightning sets this plain string about 30 times per batch (around every hook call);
        # nn.Module's __setattr__, which checks for parameters, buffers and submodules, costs
        # ~4 µs each on this machine — 2–5 % of a toy step. A string is none of those.
        if name == "_current_fx_name":
            object.__setattr__(self, name, value)
        else:
            super().__setattr__(name, value)

    # --- construction -------------------------------------------------------------------------
    def build_network(self, kind: str, **options: Any) -> nn.Module:
        """A default ``kind`` network of this algorithm's ``architecture``, sized to its data and latent."""
        h = self.hparams
        defaults = dict(data_shape=self.data_shape, latent_dim=self.latent_dim, hidden=self.hidden, noise_dim=h.noise_dim, noise_injection=h.noise_injection,
                        noise_components=h.noise_components,
                        generator_act=h.generator_activation)
        return build_network(kind, h.architecture, **{**defaults, **options})

    def default_encoder(self) -> nn.Module:
        return self.build_network("implicit_encoder")

    def build_context_network(self, kind: str, **options: Any) -> nn.Module:
        """A default ``kind`` network that takes a location–scale encoder's ``cat(μ, log σ)`` in place of ``x``.

        All such an encoder's noise ``u`` knows of ``x``, so all a discriminator or denoiser of
        ``u`` needs: a small MLP whatever the data, however large the images. Its input is
        ``3 · latent_dim`` wide, and its layers scale with it (``8 · latent_dim`` units, within
        64–256). On MNIST (``conv_small``, z = 8, one thread) 64 units cut PCDen's six denoiser
        steps from 12 to 5 ms per update (the encoder's step is ~35 ms) and scored as well or
        better on AIS (seeds 0–2); at z = 32 they were too few (PCAdv+AC diverged).
        """
        width = min(256, max(64, 8 * self.latent_dim))
        hidden = self.hidden if self.hparams.architecture == "mlp" else (width, width)
        return build_network(kind, "mlp", data_shape=(2 * self.latent_dim,), latent_dim=self.latent_dim, hidden=hidden, **options)

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
        self._install_atomic_checkpoints()
        datamodule = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        if stage == "fit" and isinstance(getattr(datamodule, "batch_size", None), int):
            self._check_splits(datamodule.batch_size)  # before training starts, not at its first batch
        if datamodule is not None and hasattr(datamodule, "data_shape"):
            data_shape = as_shape(datamodule.data_shape)
            if data_shape != self.data_shape:
                raise ValueError(
                    f"the data module gives examples of shape {data_shape} but {type(self).__name__} was built for "
                    f"data_shape={self.data_shape}: set data_shape={list(data_shape)} (the CLI links it for you)"
                )
        if getattr(datamodule, "simulator", None) is not None:
            self._adopt_simulator(datamodule)
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

    def _adopt_simulator(self, datamodule: Any) -> None:
        """Infer in the standardised, unconstrained space of a simulator data module's pairs.

        The parameter space is fitted to the simulated training pairs (the prior's support mapped
        to ``R^d``, then z-scores of both sides), and the data module's prior and simulator become
        the known model, seen in that space. A resumed run then loads the saved statistics.
        """
        name = type(self).__name__
        if self.hparams.learn_model or self.prior is not None or self.likelihood is not None:
            raise ValueError(
                f"{name} was given a simulator data module, which supplies the model (its prior and simulator): "
                "construct the algorithm with learn_model=False and no prior= or likelihood="
            )
        theta, x = datamodule.training_simulations()
        prior = as_prior(datamodule.prior)
        self.parameter_space.fit(theta, x, support_of(prior))
        self.prior = LatentPrior(prior, self.parameter_space)
        self.likelihood = SimulatorLikelihood(datamodule.simulator, self.parameter_space)
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

    def _install_atomic_checkpoints(self) -> None:
        """Swap Lightning's default checkpoint writer for :class:`AtomicCheckpointIO` (no half-written files)."""
        from lightning_fabric.plugins.io.torch_io import TorchCheckpointIO

        strategy = self.trainer.strategy if self._trainer is not None else None
        if strategy is not None and type(strategy.checkpoint_io) is TorchCheckpointIO:
            strategy.checkpoint_io = AtomicCheckpointIO()

    def on_fit_start(self) -> None:
        """Stop torch re-probing for a GPU in every optimizer step when training on a GPU-less CPU.

        Importing Lightning sets ``PYTORCH_NVML_BASED_CUDA_CHECK=1`` (a fork-safe probe). With a
        CUDA build of torch and no GPU visible, torch then loads NVML afresh inside every Adam
        step to ask whether CUDA is available: ~0.1 ms per step, 3–10% of a toy step, that a
        plain PyTorch loop does not pay (``benchmarks/overhead.py``). With no GPU visible the
        answer cannot change during the run, so torch's default probe (cached) is used until
        ``on_fit_end`` puts the setting back.
        """
        if (
            self.device.type == "cpu"
            and os.environ.get(CUDA_PROBE_ENV) == "1"
            and torch.backends.cuda.is_built()
            and not torch.cuda.is_available()
        ):
            self._cuda_probe_env = os.environ[CUDA_PROBE_ENV]
            os.environ[CUDA_PROBE_ENV] = "0"
        self._direct_updates = self._hooks_are_pass_through()  # and skip Lightning's update plumbing where it does nothing
        self._check_weight_averaging()
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            _destroy_gloo_group_at_exit()

    def _check_weight_averaging(self) -> None:
        """Refuse an ``EMAWeightAveraging`` that would update erratically or never.

        Its ``update_every_n_steps`` counts optimizer steps, but it is checked only at the end of a
        batch, after the whole update schedule: with two steps a batch and 2 it never fires, and the
        model ends with its initial weights. One step a batch (a VAE) counts batches, as meant.
        """
        if EMAWeightAveraging is None or (len(self.trainer.optimizers) == 1 and self.hparams.updates_per_batch == 1):
            return
        for callback in self.trainer.callbacks:
            if isinstance(callback, EMAWeightAveraging) and callback.update_every_n_steps != 1:
                raise ValueError(
                    f"EMAWeightAveraging(update_every_n_steps={callback.update_every_n_steps}) counts optimizer steps, but "
                    f"{type(self).__name__} takes several per batch and the average is updated only at a batch's end, so it "
                    "would update erratically or never: keep 1 (one update a batch), and set a longer horizon with decay"
                )

    def _hooks_are_pass_through(self) -> bool:
        """Whether :meth:`optimize` may skip Lightning's backward/step plumbing (same result, less time).

        ``manual_backward`` and ``LightningOptimizer.step`` pass each update through the strategy,
        the precision plugin and every callback's ``on_before_backward`` / ``on_after_backward`` /
        ``on_before_optimizer_step`` hooks: 1.2% of a toy VAE step and 3.4% of a toy PCAdv step
        (four updates) on a CPU, measured A/B with this path on and off. On one device, in full
        precision, with no profiler and no callback or override of those hooks, all of that
        reduces to ``loss.backward()`` and ``optimizer.step()``; :meth:`optimize` then calls them
        directly (still counting the step and still calling this module's
        ``on_before_optimizer_step``, which clips). Anything else keeps Lightning's path.
        """
        trainer = self.trainer
        hooks = ("on_before_backward", "on_after_backward", "on_before_optimizer_step")
        return (
            type(trainer.strategy) is SingleDeviceStrategy
            and type(trainer.precision_plugin) is Precision
            and isinstance(trainer.profiler, PassThroughProfiler)
            and all(getattr(type(cb), h) is getattr(pl.Callback, h) for cb in trainer.callbacks for h in hooks)
            and all(getattr(type(self), h) is getattr(pl.LightningModule, h) for h in ("backward", "on_before_backward", "on_after_backward"))
        )

    def on_fit_end(self) -> None:
        self._direct_updates = False
        if self._cuda_probe_env is not None:
            os.environ[CUDA_PROBE_ENV], self._cuda_probe_env = self._cuda_probe_env, None

    def on_train_start(self) -> None:
        """Give each rank its own noise stream, or put back the streams saved in the checkpoint."""
        states, self._rng_to_restore = self._rng_to_restore, None
        world, rank = self.trainer.world_size, self.global_rank
        if states and self.trainer.ckpt_path is not None:
            if len(states) == world:
                _set_rng_state(states[rank])
                return
            warnings.warn(
                f"the checkpoint holds the random streams of {len(states)} processes but this run has {world}: "
                "continuing from rank 0's stream offset by rank (the noise will differ from an uninterrupted run)"
            )
            _set_rng_state(states[0])
            if world > 1:
                torch.manual_seed(int(torch.randint(2**62, ())) + RANK_SEED_STRIDE * rank)
            return
        # seed_everything gives every rank the same random stream; offset it by rank so each
        # process draws its own encoder noise, prior samples and corruption, reproducibly.
        if world > 1:
            torch.manual_seed(torch.initial_seed() + RANK_SEED_STRIDE * rank)

    # --- checkpoints -------------------------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: Dict[str, Any]) -> None:
        """Record the algorithm, every rank's random streams and the skipped-update count.

        Lightning already stores every network (``state_dict``), optimizer, scheduler and the
        loops' progress (with the data loader's position for resumable loaders). Under DDP the
        streams are gathered from all ranks (Lightning builds the checkpoint on every rank).
        """
        state = _rng_state()
        states = [state]
        if self._trainer is not None and self.trainer.world_size > 1 and torch.distributed.is_initialized():
            states = [None] * self.trainer.world_size
            torch.distributed.all_gather_object(states, state)
        checkpoint["ivi_algorithm"] = type(self).__name__
        checkpoint["ivi_rng"] = states
        checkpoint["ivi_nonfinite_skips"] = self.nonfinite_skips

    def on_load_checkpoint(self, checkpoint: Dict[str, Any]) -> None:
        """Refuse another algorithm's checkpoint; keep the random streams for :meth:`on_train_start`."""
        _check_algorithm(checkpoint, type(self))
        self._rng_to_restore = checkpoint.get("ivi_rng")
        self.nonfinite_skips = int(checkpoint.get("ivi_nonfinite_skips", 0))

    @classmethod
    def load_from_checkpoint(cls, checkpoint_path: Any, *args: Any, **kwargs: Any) -> "ImplicitVI":
        """Lightning's ``load_from_checkpoint``, with clear errors for a missing or corrupted file
        and for a checkpoint written by another algorithm.

        Args:
            checkpoint_path: path (or file object) of the checkpoint.
            *args: passed to ``LightningModule.load_from_checkpoint``.
            **kwargs: passed to ``LightningModule.load_from_checkpoint``.
        """
        if isinstance(checkpoint_path, (str, os.PathLike)) and os.path.exists(checkpoint_path):
            with open(checkpoint_path, "rb") as f:
                data = io.BytesIO(f.read())
            _check_algorithm(read_checkpoint(data, weights_only=False, name=checkpoint_path), cls)
            data.seek(0)
            checkpoint_path = data
        elif isinstance(checkpoint_path, (str, os.PathLike)):
            read_checkpoint(checkpoint_path)  # raises the clear "does not exist" error
        return super().load_from_checkpoint(checkpoint_path, *args, **kwargs)

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
        """Adam, fused (one kernel over all parameters) where torch has that for every parameter.

        Same update as the default per-tensor loop up to rounding; on this project's 2-core CPU a
        step takes 135 µs instead of 433 µs for the toy VAE's parameters and 453 µs instead of
        1,486 µs for MNIST ``conv_small``'s (one thread).
        """
        fused = all(p.is_floating_point() and p.device.type in ("cpu", "cuda") for p in params) or None
        return torch.optim.Adam(params, lr=lr, betas=tuple(self.hparams.betas), fused=fused)

    def configure_optimizers(self):
        """One Adam for encoder (+ model), one for the auxiliary networks if there are any."""
        variational = self._adam(self.encoder_parameters() + self.model_parameters(), self.hparams.lr)
        auxiliary = [p for net in self.auxiliary_networks() for p in net.parameters()]
        return (variational, self._adam(auxiliary, self.hparams.aux_lr)) if auxiliary else variational

    # --- data --------------------------------------------------------------------------------
    def batch_data(self, batch: Any) -> Tensor:
        """The data tensor ``x`` of a batch (``x``, ``(x, label, ...)`` or :class:`Simulations`, standardised), shape-checked."""
        if isinstance(batch, Simulations):
            return self.parameter_space.standardize(self._checked(batch.x))
        return self._checked(batch[0] if isinstance(batch, (tuple, list)) else batch)

    def _checked(self, x: Tensor) -> Tensor:
        if tuple(x.shape[1:]) != self.data_shape:
            raise ValueError(
                f"{type(self).__name__} expects batches of shape [batch, {', '.join(map(str, self.data_shape))}] "
                f"(data_shape={self.data_shape}) but got {list(x.shape)}: set data_shape to match the data"
            )
        return x

    def update_batches(self, batch: Any) -> Tuple[Tensor, ...]:
        """The data of a loaded batch as ``updates_per_batch`` equal update batches (shape-checked)."""
        x = self.batch_data(batch)
        parts = self.hparams.updates_per_batch
        if parts == 1:
            return (x,)
        self._check_splits(x.shape[0])
        return x.chunk(parts)

    def update_joints(self, batch: Any) -> List[Tuple[Tensor, Optional[Tuple[Tensor, Tensor]]]]:
        """``(x, model_joint)`` per update batch: the simulated pairs ``(x, z)`` of a :class:`Simulations`
        batch, in the algorithm's coordinates, stand for the model's joints (``None``: sample the model).

        With simulated pairs, the encoder's joints ``(x_i, z ~ q(z|x_i))`` are contrasted with the
        pairs themselves ``(x_i, z_i)``: the same ``x``, so only the conditionals differ, and a fixed
        simulation budget is never exceeded.
        """
        xs = self.update_batches(batch)
        if not isinstance(batch, Simulations):
            return [(x, None) for x in xs]
        zs = self.parameter_space.to_latent(batch.theta).chunk(len(xs))
        return [(x, (x, z)) for x, z in zip(xs, zs)]

    def _check_splits(self, batch_size: int) -> None:
        parts = self.hparams.updates_per_batch
        if batch_size % parts:
            raise ValueError(
                f"a batch of {batch_size} examples cannot be split into updates_per_batch={parts} equal update batches: "
                f"set the data module's batch_size to a multiple of {parts} (updates_per_batch × the update batch size)"
            )

    # --- sampling ----------------------------------------------------------------------------
    def sample_posterior(self, x: Tensor, num_samples: int = 1) -> Tensor:
        """``num_samples`` draws of ``q(z|x)`` per example, in the user's units.

        Differentiable (reparameterised); wrap in ``torch.no_grad()`` for evaluation. After
        training on a simulator data module, ``x`` is an observation as the simulator returns it
        and the draws are parameters inside the prior's support (the standardisation is undone).

        Args:
            x: observations ``[batch, *data_shape]``, or one observation ``[*data_shape]``.
            num_samples: draws per observation.

        Returns:
            ``[num_samples, batch, latent_dim]``, or ``[num_samples, latent_dim]`` for one unbatched observation.
        """
        single = tuple(x.shape) == self.data_shape
        batch = x.unsqueeze(0) if single else x
        if tuple(batch.shape[1:]) != self.data_shape:
            raise ValueError(
                f"sample_posterior takes observations of shape {list(self.data_shape)} or [batch, {', '.join(map(str, self.data_shape))}], "
                f"got {list(x.shape)}"
            )
        space = self.parameter_space
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

        A NaN/inf loss or gradient (after DDP's averaging, and agreed between ranks) stops training
        with :class:`NonFiniteLossError` naming the network and the global step, or, with
        ``on_nonfinite="skip"``, drops this update. Gradient clipping happens in
        :meth:`on_before_optimizer_step`, after mixed precision has unscaled the gradients. Where
        Lightning's backward/step plumbing is a pass-through (one device, full precision, no hook
        users: see :meth:`_hooks_are_pass_through`) it is skipped, with the same result.

        Args:
            optimizer: the (Lightning-wrapped) optimizer to step.
            loss: scalar loss to descend.
            name: the network(s) it trains, for messages (default: found from the optimizer's parameters).
        """
        direct = self._direct_updates and isinstance(optimizer, LightningOptimizer) and hasattr(optimizer, "_on_before_step")
        optimizer.zero_grad(set_to_none=True)
        if direct:
            loss.backward()
        else:
            self.manual_backward(loss)
        if not self._update_is_finite(optimizer, loss):
            optimizer.zero_grad(set_to_none=True)
            what = name or self.optimizer_name(optimizer)
            if self.hparams.on_nonfinite == "raise":
                raise NonFiniteLossError(
                    f"{type(self).__name__}: the {what} update at global step {self.global_step} has a non-finite loss or "
                    f"gradient (loss={loss.detach().float().item()}); training stopped before applying it, and the last "
                    "checkpoint is intact. Fix: lower lr/aux_lr, set grad_clip, or pass on_nonfinite='skip' to drop such updates"
                )
            self.nonfinite_skips += 1
            self.log("train/nonfinite_skips", float(self.nonfinite_skips), reduce_fx="max")
            return False
        if direct:  # what LightningOptimizer.step amounts to here (see _hooks_are_pass_through)
            optimizer._on_before_step()
            self.on_before_optimizer_step(optimizer)
            optimizer.optimizer.step()
            optimizer._on_after_step()
        else:
            optimizer.step()
        return True

    def _update_is_finite(self, optimizer: Any, loss: Tensor) -> bool:
        """Whether the loss and this optimizer's gradients are finite, on every rank.

        One check over the loss and all gradients and one host read per step (see :func:`_all_finite`).
        """
        checked = [loss.detach().float().reshape(-1).clone()]  # a copy: the check may write to it
        scaler = getattr(self.trainer.precision_plugin, "scaler", None) if self._trainer is not None else None
        if scaler is None:  # with a GradScaler, inf gradients are expected: the scaler skips those steps
            checked += [p.grad for p in self._optimizer_params(optimizer) if p.grad is not None]
        finite = _all_finite(checked)
        if self._trainer is not None and self.trainer.world_size > 1:
            finite = bool(self.trainer.strategy.reduce_boolean_decision(finite, all=True))
        return finite

    def _optimizer_params(self, optimizer: Any) -> List[Tensor]:
        """The parameters an optimizer steps (cached per optimizer)."""
        raw = getattr(optimizer, "optimizer", optimizer)
        cache = self._params_of_optimizer
        key = (id(raw), sum(len(g["params"]) for g in raw.param_groups))
        if key not in cache:
            cache[key] = [p for group in raw.param_groups for p in group["params"]]
        return cache[key]

    def optimizer_name(self, optimizer: Any) -> str:
        """The networks an optimizer trains, e.g. ``"discriminator"`` or ``"encoder+likelihood"``."""
        raw = getattr(optimizer, "optimizer", optimizer)
        if id(raw) not in self._optimizer_names:
            params = {id(p) for p in self._optimizer_params(raw)}
            names = [n for n, m in self.named_children() if any(id(p) in params for p in m.parameters())]
            self._optimizer_names[id(raw)] = "+".join(names) or "unnamed"
        return self._optimizer_names[id(raw)]

    def on_before_optimizer_step(self, optimizer: Any) -> None:
        """Clip the gradient norm to ``grad_clip``: called inside the step, after AMP's unscaling."""
        if self.hparams.grad_clip is not None:
            self.clip_gradients(optimizer, gradient_clip_val=self.hparams.grad_clip, gradient_clip_algorithm="norm")

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
        # Averaged over ranks under DDP (each rank sees its own data and noise).
        kwargs.setdefault("sync_dist", self._trainer is not None and self.trainer.world_size > 1)
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

    def _log_elbo(self, batch: Any, stage: str) -> None:
        x = self.batch_data(batch)
        elbo = self.elbo_estimate(x)
        if elbo is not None:
            self.log(f"{stage}/elbo", elbo.mean(), sync_dist=True, prog_bar=stage == "val")

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        self._log_elbo(batch, "val")

    def test_step(self, batch: Any, batch_idx: int) -> None:
        """Logs ``test/elbo`` where the algorithm has an estimate; add ``AISCallback`` for ``log p(x)``."""
        self._log_elbo(batch, "test")


# --- helpers -----------------------------------------------------------------------------------
_exit_hook_registered = False


def _destroy_gloo_group_at_exit() -> None:
    """Destroy this process's gloo process group when it exits, while the interpreter is whole.

    Lightning leaves the group alive after ``fit`` (a later ``test`` reuses it). A process that
    exits with a gloo group alive can be aborted during interpreter finalization, when gloo's
    threads release tensors (``terminate called without an active exception``, SIGABRT; seen
    here in a 2-process CPU fit's spawned worker, and the cause named in pytorch/pytorch#179291).
    Destroying a gloo group is local, so it is safe at exit whatever the other ranks do.
    """
    global _exit_hook_registered
    if _exit_hook_registered:
        return
    _exit_hook_registered = True

    def destroy() -> None:
        try:
            if torch.distributed.is_initialized() and torch.distributed.get_backend() == "gloo":
                torch.distributed.destroy_process_group()
        except Exception:  # exiting anyway: never turn a clean exit into a traceback
            pass

    atexit.register(destroy)


def detached(tensors: Optional[Tuple[Tensor, ...]]) -> Optional[Tuple[Tensor, ...]]:
    """``tensors`` cut from their graph (``None`` stays ``None``): e.g. a location–scale encoder's
    ``(μ, σ)``, computed once per update with its graph for the encoder and detached for the auxiliary network."""
    return None if tensors is None else tuple(t.detach() for t in tensors)


def _all_finite(tensors: List[Tensor]) -> bool:
    """Whether every element of ``tensors`` is finite, with one host read.

    Where all are on one device, one kernel: the check ``GradScaler`` runs before unscaling, with
    a scale of 1 (values unchanged). For the toy VAE's loss and gradients on this project's CPU it
    takes 13 µs, against 30 µs for summing their norms (the previous check). Tensors on several
    devices, and sparse ones, are checked one by one.
    """
    device = tensors[0].device
    if hasattr(torch, "_amp_foreach_non_finite_check_and_unscale_") and all(t.device == device and t.layout == torch.strided for t in tensors):
        found = torch.zeros(1, device=device)
        torch._amp_foreach_non_finite_check_and_unscale_(tensors, found, torch.ones(1, device=device))
        return not found.item()
    return all(bool(torch.isfinite(t.coalesce().values() if t.is_sparse else t).all()) for t in tensors)


def _check_algorithm(checkpoint: Dict[str, Any], cls: type) -> None:
    """Raise :class:`CheckpointError` if ``checkpoint`` was written by an algorithm other than ``cls``."""
    saved = checkpoint.get("ivi_algorithm")
    if saved is not None and cls is not ImplicitVI and saved != cls.__name__:
        raise CheckpointError(
            f"this checkpoint was written by {saved}, not {cls.__name__}: load it with {saved}.load_from_checkpoint(...) "
            f"or, in the CLI, pass --model {saved} (its config) together with this --ckpt_path"
        )


def _rng_state() -> Dict[str, Any]:
    """This process's torch (CPU and CUDA), numpy and Python random states, as plain types and tensors."""
    key, pos, has_gauss, cached = np.random.get_state()[1:]
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {"key": torch.from_numpy(key.astype(np.int64)), "pos": int(pos), "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "python": random.getstate(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: Dict[str, Any]) -> None:
    """Put back a state from :func:`_rng_state`."""
    torch.set_rng_state(state["torch"].cpu())
    n = state["numpy"]
    np.random.set_state(("MT19937", n["key"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached_gaussian"]))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])
