"""JC-Adv: joint-contrastive, adversarial, with ALI and BiGAN as ``loss`` options.
See the docs' Concepts page (``docs/concepts.md``), "JCAdv"."""

from __future__ import annotations

from typing import Any, Dict, Optional, Tuple

import torch
from torch import Tensor, nn

from ivi_lightning.algorithms.base import ImplicitVI
from ivi_lightning.algorithms.joint_discriminator import (
    PackedDiscriminator,
    add_noise,
    check_schedule,
    discriminator_updates,
    instance_noise_std,
    joint_discriminator,
)
from ivi_lightning.data import Simulations
from ivi_lightning.distributions import BernoulliLikelihood, has_log_prob, require_log_prob
from ivi_lightning.estimators import (
    forward_kl_encoder_loss,
    gan_generator_loss,
    gumbel_keys,
    joint_gradient_penalty,
    ratio_accuracy,
    ratio_loss,
)
from ivi_lightning.numbers import is_nonnegative_number, is_whole_number

LOSSES = ("kl", "forward_kl", "ali", "bigan")


def check_instance_noise(stds: Dict[str, Any], steps: Any, schedule: Any = "linear") -> None:
    """Refuse a negative instance noise (``stds``: name → standard deviation), a positive one with
    no positive whole ``instance_noise_steps``, or an unknown ``instance_noise_schedule``."""
    check_schedule(schedule)
    for name, std in stds.items():
        if not is_nonnegative_number(std):
            raise ValueError(f"{name} is a standard deviation, ≥ 0 (0: none), got {std!r}")
    if not is_whole_number(steps, 0):
        raise ValueError(f"instance_noise_steps must be a whole number of optimizer steps ≥ 0, got {steps!r}")
    for name, std in stds.items():
        if std > 0 and steps == 0:
            raise ValueError(
                f"{name}={std} needs instance_noise_steps > 0, the optimizer steps over which it "
                "falls: e.g. half of the training's optimizer steps"
            )


class JCAdv(ImplicitVI):
    """A discriminator ``T(x, z)`` on joints estimates ``s = log q(x, z) − log p(x, z)``.

    Each step: ``aux_steps`` logistic-regression updates of ``T`` (encoder joints
    ``(x, g(x, ε))`` against model joints ``(x', z') ~ p(z) p(x'|z')``), then one update of the
    encoder (and model). No density of the model is needed for inference: the prior and
    likelihood may be simulators (``sample`` only).

    * ``loss="kl"``: the encoder minimises ``E[T(x, g(x, ε))]`` — the KL between the joints,
      i.e. the negative average ELBO up to the data entropy. A learned model takes the
      gradient ``−E_q[∇_θ log p_θ(x, z)]``: maximum likelihood on detached encoder samples,
      so it needs ``log_prob`` of the likelihood (an implicit model needs :class:`JCAdvRMD`).
    * ``loss="forward_kl"``: inference only (``learn_model=False``): the encoder minimises the
      forward KL ``E_{p(x)} KL[p(z|x) ‖ q(z|x)]`` through the same discriminator, in its f-GAN
      form (:func:`~ivi_lightning.estimators.forward_kl_encoder_loss`): mode-covering where the
      reverse KL is mode-seeking.
    * ``loss="ali"``: ALI's minimax on the Jensen–Shannon divergence with non-saturating losses
      on both sides: the encoder minimises ``−log(1 − σ(T(x, z_q)))`` and, with a learned
      model, the generator ``z' ~ p(z), x' ~ p(x|z')`` minimises ``−log σ(T(x', z'))`` through
      its reparameterised samples.
    * ``loss="bigan"``: the same with a deterministic encoder ``z = g(x)`` by default.

    Args:
        discriminator: network ``(x, z) -> logit``; default an MLP ``Discriminator``.
        loss: ``"kl"``, ``"forward_kl"``, ``"ali"`` or ``"bigan"``, see above.
        aux_steps: discriminator updates per encoder update (as for PCAdv, 3 keeps the
            discriminator ahead of the encoder on the toys).
        packing: the discriminator sees this many joints at once (PacGAN's packing, see
            :class:`~ivi_lightning.algorithms.joint_discriminator.PackedDiscriminator`; a given
            ``discriminator`` must then take packed joints); ``1``: one joint per logit.
        instance_noise: standard deviation of Gaussian noise added to the ``z`` of both joints
            before the discriminator sees them (in the latent's inference coordinates: standardised
            for a simulator), falling over ``instance_noise_steps`` optimizer steps as
            ``instance_noise_schedule`` says. Blurred, the encoder's joints overlap the model's
            even where ``q`` has missed a posterior mode, so ``∇_z T`` points towards it; ``0``:
            none.
        data_instance_noise: the same for the ``x`` of both joints, in the data's units, over the
            same steps. Blurred, the model's samples overlap the data even where a learned
            generator has dropped a mode, so the generator's gradient points towards it.
        instance_noise_steps: optimizer steps (the Trainer's ``global_step``) over which the
            instance noise falls; required when either noise is positive.
        instance_noise_schedule: ``"linear"`` (to ``0`` at ``instance_noise_steps``) or
            ``"geometric"`` (by the same factor every step, to 1% of its first value at
            ``instance_noise_steps``, then held: as many steps at every scale of the blur; see
            :func:`~ivi_lightning.algorithms.joint_discriminator.instance_noise_std`).
        r1_penalty: weight ``γ ≥ 0`` of R1's gradient penalty, ``γ/2 · E‖∇_{x,z} T‖²`` at the
            encoder's (blurred) joints, added to the discriminator's loss
            (:func:`~ivi_lightning.estimators.joint_gradient_penalty`): ``T`` kept flat around the
            data damps the oscillation of a learned generator around the modes; ``0``: none.
        **kwargs: see :class:`~ivi_lightning.algorithms.base.ImplicitVI`.
    """

    alternative = ""

    def __init__(
        self,
        discriminator: Optional[nn.Module] = None,
        loss: str = "kl",
        aux_steps: int = 3,
        packing: int = 1,
        instance_noise: float = 0.0,
        instance_noise_steps: int = 0,
        data_instance_noise: float = 0.0,
        instance_noise_schedule: str = "linear",
        r1_penalty: float = 0.0,
        **kwargs: Any,
    ) -> None:
        if loss not in LOSSES:
            raise ValueError(f"loss must be one of {', '.join(LOSSES)}, got {loss!r}")
        noise = {"instance_noise": instance_noise, "data_instance_noise": data_instance_noise}
        check_instance_noise(noise, instance_noise_steps, instance_noise_schedule)
        if not is_nonnegative_number(r1_penalty):
            raise ValueError(f"r1_penalty is a weight, ≥ 0 (0: none; e.g. 0.1), got {r1_penalty!r}")
        super().__init__(aux_steps=aux_steps, **kwargs)
        # An attribute, not only an hparam: subclasses fix the loss and the CLI records only their own
        # arguments.
        self.loss_kind = loss
        self.discriminator = joint_discriminator(self, discriminator, packing)
        self._check_learnable()

    def default_encoder(self) -> nn.Module:
        # BiGAN's encoder is a point mass; ALI and the KL form use an implicit (noisy) one.
        return self.build_network(
            "deterministic_encoder" if self.hparams.get("loss") == "bigan" else "implicit_encoder"
        )

    def _check_learnable(self) -> None:
        """Refuse a learned model whose update this loss cannot compute."""
        if not self.hparams.learn_model:
            return
        name = type(self).__name__
        if self.loss_kind == "forward_kl":
            raise ValueError(
                f"{name}(loss='forward_kl') is for inference in a fixed model: set learn_model=False"
            )
        if self.loss_kind == "kl":
            for part in ("likelihood", "prior"):
                value = getattr(self, part)
                # A parameter-free prior needs no gradient, hence no density.
                if part == "likelihood" or any(True for _ in value.parameters()):
                    require_log_prob(
                        value,
                        part,
                        f"{name}(loss='kl', learn_model=True)",
                        "It learns the model by maximum likelihood on encoder samples: use JCAdvRMD to "
                        "learn an implicit model, or loss='ali', or learn_model=False for inference only.",
                    )
        elif isinstance(self.likelihood, BernoulliLikelihood):
            raise ValueError(
                f"{name}(loss={self.loss_kind!r}, learn_model=True) trains the generator through its "
                "samples, but Bernoulli samples are not reparameterised: "
                "use likelihood_family='gaussian' or an ImplicitLikelihood"
            )

    def auxiliary_networks(self) -> list:
        return [self.discriminator]

    def discriminator_penalty(self, x: Tensor, z_q: Tensor) -> Tensor:
        """R1's ``γ/2 · E‖∇_{x,z} T‖²`` at the encoder joints ``(x, z_q)`` (``r1_penalty = γ``)."""
        gamma = self.hparams.get("r1_penalty", 0.0)  # absent from older checkpoints
        if gamma == 0:
            return torch.zeros((), device=x.device)
        return 0.5 * gamma * joint_gradient_penalty(self.discriminator, x, z_q)

    def discriminator_step(
        self, x: Tensor, optimizer: Any, model_joint: Optional[Tuple[Tensor, Tensor]] = None
    ) -> dict:
        """``aux_steps`` logistic-regression updates of ``T``: encoder joints (label 1) vs model joints
        (``model_joint``, e.g. simulated pairs, or fresh samples of the model when ``None``)."""
        return discriminator_updates(
            self, x, optimizer, model_joint, self.data_instance_noise(), self.instance_noise()
        )

    def instance_noise(self) -> float:
        """The standard deviation of the instance noise on ``z`` now (``0`` outside training)."""
        return self._annealed(self.hparams.instance_noise)

    def data_instance_noise(self) -> float:
        """The standard deviation of the instance noise on ``x`` now (``0`` outside training)."""
        return self._annealed(self.hparams.get("data_instance_noise", 0.0))

    def _annealed(self, initial: float) -> float:
        if not self.training:
            return 0.0
        schedule = self.hparams.get("instance_noise_schedule", "linear")  # absent from older checkpoints
        return instance_noise_std(initial, self.hparams.instance_noise_steps, self.global_step, schedule)

    def blur(self, x: Tensor, z: Tensor) -> Tuple[Tensor, Tensor]:
        """A joint with the instance noise of now added to its ``x`` and ``z``."""
        return add_noise(x, self.data_instance_noise()), add_noise(z, self.instance_noise())

    @torch.no_grad()
    def sample_model_resampled(
        self, num_samples: int, oversampling_factor: int = 32
    ) -> Tuple[Tensor, Tensor]:
        """Model joints ``(x, z)`` moved towards the encoder's joint ``q(x, z)`` by the discriminator.

        Draws ``oversampling_factor · num_samples`` joints of ``p(z) p(x|z)`` and keeps
        ``num_samples`` distinct ones, drawn with probability ``∝ exp T(x, z) ≈ q(x, z) / p(x, z)``
        (sampling-importance-resampling, :func:`~ivi_lightning.estimators.importance_resample`,
        run batch by batch: ``oversampling_factor`` draws of ``num_samples`` joints, so the memory
        is that of two plain draws).
        The ``x`` of ``q``'s joint is the data, so a learned model's samples come back closer to
        the data: fewer between modes, and modes the model samples too rarely get their share. A
        mode the model never samples stays lost; the correction is only as good as ``T``.

        Args:
            num_samples: joints to return.
            oversampling_factor: proposals per returned joint, a whole number ``≥ 1`` (``1``: no
                correction, plain :meth:`sample_model`).

        Returns:
            ``(x, z)``, ``[num_samples, *data_shape]`` and ``[num_samples, latent_dim]``.

        >>> from ivi_lightning.distributions import ImplicitLikelihood
        >>> ali = JCAdv(latent_dim=2, data_shape=2, loss="ali", likelihood=ImplicitLikelihood(2, 2))
        >>> [tuple(t.shape) for t in ali.sample_model_resampled(100, oversampling_factor=8)]
        [(100, 2), (100, 2)]
        """
        if not is_whole_number(oversampling_factor, 1):
            raise ValueError(
                "oversampling_factor is the number of model samples drawn per sample kept, a whole "
                f"number ≥ 1 (1: no resampling; e.g. 32), got {oversampling_factor!r}"
            )
        if isinstance(self.discriminator, PackedDiscriminator):
            raise ValueError(
                f"resampling weighs each joint by its own logit, but this discriminator packs "
                f"{self.discriminator.packing} joints into one: use a model trained with packing=1"
            )
        if oversampling_factor == 1:
            return self.sample_model(num_samples)
        # Batch by batch, keeping the best Gumbel keys so far: the memory of two plain draws.
        x, z = self.sample_model(num_samples)
        keys = gumbel_keys(self.discriminator(x, z).flatten())
        for _ in range(oversampling_factor - 1):
            x_new, z_new = self.sample_model(num_samples)
            keys_new = gumbel_keys(self.discriminator(x_new, z_new).flatten())
            x, z, keys = torch.cat([x, x_new]), torch.cat([z, z_new]), torch.cat([keys, keys_new])
            best = keys.topk(num_samples).indices
            x, z, keys = x[best], z[best], keys[best]
        return x, z

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        """On held-out simulated pairs: how well ``T`` still tells the encoder's joints from the pairs.

        ``val/discriminator_loss`` rises towards ``2 log 2`` (and the accuracy falls to 0.5) as
        ``q(z|x)`` approaches the posterior; a discriminator that has memorised the training
        pairs scores worse here than in training.
        """
        super().validation_step(batch, batch_idx)
        if isinstance(batch, Simulations):
            x = self.batch_data(batch)
            t_q, t_p = (
                self.discriminator(x, self.encoder(x)),
                self.discriminator(x, self.parameter_space.to_latent(batch.theta)),
            )
            self.log_dict(
                {
                    "val/discriminator_loss": ratio_loss(t_q, t_p),
                    "val/discriminator_accuracy": ratio_accuracy(t_q, t_p),
                },
                sync_dist=True,
            )

    def model_log_joint(self, x: Tensor, z: Tensor) -> Tensor:
        """``log p(x|z) + log p(z)`` per example; a parameter-free implicit prior contributes nothing."""
        log_joint = self.likelihood.log_prob(x, z)
        return log_joint + self.prior.log_prob(z) if has_log_prob(self.prior) else log_joint

    def training_step(self, batch: Any, batch_idx: int) -> None:
        opt_vi, opt_disc = self.optimizers()
        # updates_per_batch chunks (default: the whole batch), with their simulated pairs if any
        for x, model_joint in self.update_joints(batch):
            metrics = self.discriminator_step(x, opt_disc, model_joint)

            z = self.encoder(x)
            t_q = self.discriminator(*self.blur(x, z))
            learn = self.hparams.learn_model
            if self.loss_kind == "kl":
                loss_encoder = t_q.mean()  # E_q[T] ≈ KL[q(x,z) ‖ p(x,z)] = −E[ELBO] − H[q_D]
                # z detached: the encoder's gradient is all in ∇_z T; the model's is −E_q[∇_θ log p_θ(x, z)].
                loss_model = (
                    -self.model_log_joint(x, z.detach()).mean() if learn else torch.zeros((), device=x.device)
                )
                metrics["kl_estimate"] = loss_encoder
            elif self.loss_kind == "forward_kl":
                loss_encoder, loss_model = forward_kl_encoder_loss(t_q), torch.zeros((), device=x.device)
            else:
                loss_encoder = gan_generator_loss(-t_q)  # encoder fools T into calling its joints the model's
                loss_model = torch.zeros((), device=x.device)
                if learn:
                    x_model, z_model = self.sample_model(x.shape[0])
                    loss_model = gan_generator_loss(self.discriminator(*self.blur(x_model, z_model)))
            self.optimize(opt_vi, loss_encoder + loss_model)
        self.log_metrics(
            "train", {**metrics, "loss_encoder": loss_encoder, "loss_model": loss_model}, prog_bar=True
        )
