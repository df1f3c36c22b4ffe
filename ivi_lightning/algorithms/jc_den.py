"""JC-Den: joint-contrastive, denoiser. See the docs' Concepts page (``docs/concepts.md``), "JCDen"."""

from __future__ import annotations

import math
from typing import Any, Optional, Sequence, Tuple

import torch
from torch import Tensor, nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from ivi_lightning.algorithms.base import ImplicitVI
from ivi_lightning.data import Simulations
from ivi_lightning.distributions import has_log_prob, require_log_prob
from ivi_lightning.estimators import (
    denoiser_score,
    input_gradient,
    reverse_diffusion,
    scaled_denoising_loss,
    score_surrogate,
    tile_examples,
)

MODEL_SCORES = ("auto", "density", "denoiser")
POSTERIOR_SAMPLERS = ("encoder", "diffusion")


class JCDen(ImplicitVI):
    """A joint denoiser on ``(x, z) ~ q`` supplies ``∇_z log q(z|x)``; the model's score comes from
    its densities or, likelihood-free, from a second joint denoiser on model samples.

    Each step: ``aux_steps`` updates of the denoiser(s) on detached joints corrupted by
    ``N(0, data_noise_std²)`` on ``x`` and ``N(0, noise_std²)`` on ``z``, then one encoder (and
    model) update on the surrogate ``stopgrad(ŝ_q,z − ŝ_p,z)ᵀ z`` (``ŝ_p,z = ∇_z log p(x, z)``
    by autograd with densities), plus ``−log p_θ(x, z)`` at detached ``z`` for a learned model.

    Args:
        denoiser: network ``(x̃, z̃) -> (x, z)`` for ``q``; default an MLP ``JointDenoiser``.
        model_denoiser: the same for model samples (used without model densities).
        noise_std: corruption level of the latent block (the score's smoothing, as in PCDen).
        data_noise_std: corruption level of the data block (default ``noise_std``); keep it
            below the scale at which posteriors of nearby observations differ.
        max_noise_std: with a model denoiser, train both denoisers over a range of latent
            corruption levels, each example's ``σ`` drawn log-uniformly in
            ``[noise_std, max_noise_std]`` (noise-conditional denoisers), and move the encoder
            along ``ŝ_q,σ − ŝ_p,σ`` at the sample corrupted at ``σ``: the gradient of the KL
            between the two joints smoothed at ``σ``, averaged over the levels. Wide levels
            see every mode at once and move mass between them; narrow ones sharpen.
            ``None``: one level, ``noise_std``.
        model_score: ``"density"`` (``∇_z log p(x, z)`` by autograd), ``"denoiser"`` (a model
            denoiser, likelihood-free) or ``"auto"`` (density when prior and likelihood have one).
        aux_steps: denoiser updates per encoder update.
        posterior_sampler: how :meth:`sample_posterior` draws: ``"encoder"`` (one pass of the
            implicit encoder) or ``"diffusion"`` (needs the noise-conditional model denoiser:
            the encoder's draws, smoothed at ``max_noise_std``, carried down to ``noise_std``
            by the reverse-time diffusion with the model denoiser's score, which is an
            estimate of the posterior's own smoothed score and corrects what the encoder has
            not learnt; ``diffusion_steps`` network evaluations per draw, no gradient).
        diffusion_steps: noise levels of the ``"diffusion"`` sampler, log-spaced.
        sampler_ema: with the ``"diffusion"`` sampler, draw along an exponential moving average of
            the model denoiser's weights with this decay per update (as diffusion models do: the
            average smooths the last updates' noise out of the score), ``None`` for the weights
            themselves. The average is part of the model's state and checkpoints.
        denoiser_hidden: hidden layer sizes of the default denoisers (default ``hidden``, that of
            every default network): the diffusion sampler is as good as the model denoiser's
            score, which gains from more capacity than the encoder needs.
        **kwargs: see :class:`~ivi_lightning.algorithms.base.ImplicitVI`.
    """

    def __init__(
        self,
        denoiser: Optional[nn.Module] = None,
        model_denoiser: Optional[nn.Module] = None,
        noise_std: float = 0.3,
        data_noise_std: Optional[float] = None,
        model_score: str = "auto",
        aux_steps: int = 3,
        max_noise_std: Optional[float] = None,
        posterior_sampler: str = "encoder",
        diffusion_steps: int = 500,
        denoiser_hidden: Optional[Sequence[int]] = None,
        sampler_ema: Optional[float] = None,
        **kwargs: Any,
    ) -> None:
        data_noise_std = noise_std if data_noise_std is None else data_noise_std
        if noise_std <= 0 or data_noise_std <= 0:
            raise ValueError(
                f"noise levels must be positive, got noise_std={noise_std}, data_noise_std={data_noise_std}"
            )
        if max_noise_std is not None and max_noise_std <= noise_std:
            raise ValueError(
                f"max_noise_std must exceed noise_std={noise_std} (or be None for one level), "
                f"got {max_noise_std}"
            )
        if model_score not in MODEL_SCORES:
            raise ValueError(f"model_score must be one of {', '.join(MODEL_SCORES)}, got {model_score!r}")
        if posterior_sampler not in POSTERIOR_SAMPLERS:
            raise ValueError(
                f"posterior_sampler must be one of {', '.join(POSTERIOR_SAMPLERS)}, got {posterior_sampler!r}"
            )
        if posterior_sampler == "diffusion" and model_score == "density":
            raise ValueError(
                "JCDen(posterior_sampler='diffusion') samples with the model denoiser: "
                "set model_score='denoiser'"
            )
        if posterior_sampler == "diffusion" and (max_noise_std is None or diffusion_steps < 2):
            raise ValueError(
                "posterior_sampler='diffusion' walks down the model denoiser's noise levels: set "
                f"max_noise_std (got {max_noise_std}) and diffusion_steps >= 2 (got {diffusion_steps})"
            )
        if sampler_ema is not None and not 0 < sampler_ema < 1:
            raise ValueError(f"sampler_ema is a decay per update and must lie in (0, 1), got {sampler_ema}")
        if sampler_ema is not None and posterior_sampler != "diffusion":
            raise ValueError(
                "sampler_ema averages the model denoiser for the diffusion sampler: "
                f"set posterior_sampler='diffusion' (got {posterior_sampler!r}) or sampler_ema=None"
            )
        super().__init__(aux_steps=aux_steps, **kwargs)
        self.noise_std, self.data_noise_std = float(noise_std), float(data_noise_std)
        self.max_noise_std = None if max_noise_std is None else float(max_noise_std)
        conditional = self.max_noise_std is not None
        sizes = {} if denoiser_hidden is None else {"hidden": tuple(denoiser_hidden)}
        build = lambda: self.build_network(
            "joint_denoiser",
            noise_std=noise_std,
            data_noise_std=data_noise_std,
            noise_conditional=conditional,
            **sizes,
        )
        self.denoiser = denoiser if denoiser is not None else build()
        # Built unless densities are promised: whether an adopted model has them is known only at setup.
        self.model_denoiser = (
            model_denoiser if model_denoiser is not None or model_score == "density" else build()
        )
        self.model_denoiser_average = None
        if sampler_ema is not None and self.model_denoiser is not None:
            self.model_denoiser_average = AveragedModel(
                self.model_denoiser, multi_avg_fn=get_ema_multi_avg_fn(sampler_ema), use_buffers=True
            ).requires_grad_(False)  # updated by averaging, never by an optimizer
        self._check_scores()

    def setup(self, stage: str) -> None:
        super().setup(stage)
        self._check_scores()

    @property
    def uses_model_denoiser(self) -> bool:
        """Whether ``∇_z log p(x, z)`` comes from the model denoiser (no model density)."""
        if self.hparams.model_score != "auto":
            return self.hparams.model_score == "denoiser"
        return not (has_log_prob(self.prior) and has_log_prob(self.likelihood))

    def _check_scores(self) -> None:
        if self.prior is None or self.likelihood is None:
            return  # adopted from the data module at setup, checked then
        name = type(self).__name__
        if self.hparams.model_score == "density":
            for part in ("prior", "likelihood"):
                require_log_prob(
                    getattr(self, part), part, f"{name}(model_score='density')", "Use model_score='denoiser'."
                )
        if self.hparams.posterior_sampler == "diffusion" and not self.uses_model_denoiser:
            raise ValueError(
                f"{name}(posterior_sampler='diffusion') samples with the model denoiser: "
                "set model_score='denoiser'"
            )
        if self.max_noise_std is not None and not self.uses_model_denoiser:
            raise ValueError(
                f"{name}(max_noise_std=...) smooths both scores, so it needs the model denoiser: "
                "set model_score='denoiser'"
            )
        if self.hparams.learn_model:
            for part in ("prior", "likelihood"):
                require_log_prob(
                    getattr(self, part),
                    part,
                    f"{name}(learn_model=True)",
                    "It learns the model by maximum likelihood on encoder samples: use JCAdvRMD to "
                    "learn an implicit model, or learn_model=False.",
                )

    def auxiliary_networks(self) -> list:
        return [self.denoiser] + ([self.model_denoiser] if self.uses_model_denoiser else [])

    def draw_posterior(self, x: Tensor, num_samples: int = 1) -> Tensor:
        """The encoder's draws, or with ``posterior_sampler="diffusion"`` those draws refined by the
        model denoiser (see the class docstring)."""
        z = super().draw_posterior(x, num_samples)
        if self.hparams.posterior_sampler == "encoder":
            return z
        assert self.max_noise_std is not None  # checked in __init__
        average = self.model_denoiser_average
        denoiser = average if average is not None else self.model_denoiser_network()
        levels = torch.logspace(
            math.log10(self.max_noise_std), math.log10(self.noise_std), self.hparams.diffusion_steps
        )
        x_rep = tile_examples(x, num_samples)
        z_flat = z.reshape(-1, self.latent_dim)

        def denoise(z_noisy: Tensor, sigma: float) -> Tensor:
            return denoiser(x_rep, z_noisy, torch.full_like(z_noisy[:, :1], sigma))[1]

        with torch.no_grad():
            smoothed = z_flat + self.max_noise_std * torch.randn_like(z_flat)
            return reverse_diffusion(denoise, smoothed, levels).view_as(z)

    def latent_noise_levels(self, num_examples: int, like: Tensor) -> Optional[Tensor]:
        """Each example's latent corruption level, ``[num, 1]`` log-uniform in ``[noise_std, max_noise_std]``
        (``None`` with one level)."""
        if self.max_noise_std is None:
            return None
        low, high = math.log(self.noise_std), math.log(self.max_noise_std)
        return (low + (high - low) * torch.rand(num_examples, 1, device=like.device, dtype=like.dtype)).exp()

    def joint_denoising_loss(self, denoiser: nn.Module, x: Tensor, z: Tensor) -> Tensor:
        """Denoising error of ``denoiser`` on clean joints ``(x, z)``, each block in units of its σ."""
        sx, levels = self.data_noise_std, self.latent_noise_levels(z.shape[0], z)
        sz = self.noise_std if levels is None else levels
        x_hat, z_hat = denoiser(
            x + sx * torch.randn_like(x), z + sz * torch.randn_like(z), *(() if levels is None else (levels,))
        )
        return scaled_denoising_loss(x_hat, x, sx) + scaled_denoising_loss(z_hat, z, sz)

    def joint_score(
        self, denoiser: nn.Module, x: Tensor, z: Tensor, levels: Optional[Tensor] = None
    ) -> Tensor:
        """``z`` block of the smoothed joint score, ``∇_z log q_σ(x, z)``, from a denoiser (at each
        example's ``levels`` for noise-conditional ones); no gradient."""
        with torch.no_grad():
            if levels is None:
                return denoiser_score(denoiser(x, z)[1], z, self.noise_std)
            return denoiser_score(denoiser(x, z, levels)[1], z, levels)

    def model_denoiser_network(self) -> nn.Module:
        """The model denoiser (there is none with ``model_score="density"``)."""
        if self.model_denoiser is None:
            raise RuntimeError(f"{type(self).__name__}(model_score='density') has no model denoiser")
        return self.model_denoiser

    def model_score(self, x: Tensor, z: Tensor) -> Tensor:
        """``∇_z log p(x, z)``: by autograd of the densities, or from the model denoiser."""
        if self.uses_model_denoiser:
            return self.joint_score(self.model_denoiser_network(), x, z)
        return input_gradient(lambda zz: self.likelihood.log_prob(x, zz) + self.prior.log_prob(zz), z)

    def score_difference(self, x: Tensor, z: Tensor) -> Tensor:
        """Estimated ``∇_z s(x, z) = ∇_z log q(z|x) − ∇_z log p(x, z)``: the encoder's whole gradient signal.

        With ``max_noise_std``, both scores are those of the joints smoothed at a level drawn per
        example, taken at ``z`` corrupted at that level: unweighted, so that the encoder descends
        the KL between the smoothed joints averaged over log-uniform levels.
        """
        levels = self.latent_noise_levels(z.shape[0], z)
        if levels is None:
            return self.joint_score(self.denoiser, x, z) - self.model_score(x, z)
        z_noisy = z + levels * torch.randn_like(z)
        return self.joint_score(self.denoiser, x, z_noisy, levels) - self.joint_score(
            self.model_denoiser_network(), x, z_noisy, levels
        )

    def denoiser_step(
        self, x: Tensor, optimizer: Any, model_joint: Optional[Tuple[Tensor, Tensor]] = None
    ) -> Tensor:
        """``aux_steps`` updates of the posterior denoiser (and the model denoiser when used, on
        ``model_joint``, e.g. simulated pairs, or fresh samples of the model when ``None``)."""
        for _ in range(self.hparams.aux_steps):
            with torch.no_grad():
                z = self.encoder(x)
                joint = None
                if self.uses_model_denoiser:
                    joint = model_joint if model_joint is not None else self.sample_model(x.shape[0])
            loss = self.joint_denoising_loss(self.denoiser, x, z)
            if joint is not None:
                loss = loss + self.joint_denoising_loss(self.model_denoiser_network(), *joint)
            self.optimize(optimizer, loss)
            if self.model_denoiser_average is not None:
                self.model_denoiser_average.update_parameters(self.model_denoiser_network())
        return loss

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        """On held-out simulated pairs: the denoisers' errors, averaged over the noise levels (a
        model denoiser that memorises the training pairs at the finest levels barely moves them:
        judge when to stop by samples)."""
        super().validation_step(batch, batch_idx)
        if isinstance(batch, Simulations):
            x = self.batch_data(batch)
            metrics = {"val/denoising_loss": self.joint_denoising_loss(self.denoiser, x, self.encoder(x))}
            if self.uses_model_denoiser:
                metrics["val/model_denoising_loss"] = self.joint_denoising_loss(
                    self.model_denoiser_network(), x, self.parameter_space.to_latent(batch.theta)
                )
            self.log_dict(metrics, sync_dist=True)

    def model_loss(self, x: Tensor, z: Tensor) -> Tensor:
        """``−E_q[log p_θ(x, z)]`` at detached ``z`` for a learned model (the model's gradient; the
        encoder's is in the surrogate), zero for a fixed one."""
        if not self.hparams.learn_model:
            return torch.zeros((), device=x.device)
        return -(self.likelihood.log_prob(x, z.detach()) + self.prior.log_prob(z.detach())).mean()

    def training_step(self, batch: Any, batch_idx: int) -> None:
        opt_vi, opt_den = self.optimizers()
        # updates_per_batch chunks (default: the whole batch), with their simulated pairs if any
        for x, model_joint in self.update_joints(batch):
            loss_den = self.denoiser_step(x, opt_den, model_joint)

            z = self.encoder(x)
            loss_encoder = score_surrogate(z, self.score_difference(x, z.detach())).mean()
            loss_model = self.model_loss(x, z)
            self.optimize(opt_vi, loss_encoder + loss_model)
        self.log_metrics(
            "train",
            {"loss_denoiser": loss_den, "loss_encoder": loss_encoder, "loss_model": loss_model},
            prog_bar=True,
        )
