"""The shared maths of implicit variational inference, as small pure functions.

Every algorithm in :mod:`ivi_lightning.algorithms` calls these; none of them holds state.
Notation follows ``ALGORITHMS.md``: ``T`` is a discriminator logit estimating a log density
ratio, ``F`` a denoiser, ``σ`` its corruption level.
"""
from __future__ import annotations

import math
from typing import Tuple

import torch
import torch.nn.functional as F
from torch import Tensor


def ratio_loss(logit_numerator: Tensor, logit_denominator: Tensor) -> Tensor:
    """Logistic-regression loss whose minimiser ``T*`` is ``log p_num / p_den``.

    Positives (label 1) are samples of the numerator, negatives (label 0) of the denominator:
    ``-E_num[log σ(T)] - E_den[log(1 - σ(T))]``.

    Args:
        logit_numerator: ``T`` at samples of the numerator distribution, any shape.
        logit_denominator: ``T`` at samples of the denominator distribution, any shape.

    >>> t = torch.zeros(4)
    >>> round(ratio_loss(t, t).item(), 4)  # an uninformed logit costs 2 log 2
    1.3863
    """
    return F.softplus(-logit_numerator).mean() + F.softplus(logit_denominator).mean()


def ratio_accuracy(logit_numerator: Tensor, logit_denominator: Tensor) -> Tensor:
    """Share of samples the logit classifies correctly (numerator > 0, denominator < 0).

    >>> ratio_accuracy(torch.tensor([1.0, -1.0]), torch.tensor([-2.0, -3.0]))
    tensor(0.7500)
    """
    correct = (logit_numerator > 0).float().sum() + (logit_denominator < 0).float().sum()
    return correct / (logit_numerator.numel() + logit_denominator.numel())


def gan_generator_loss(logit: Tensor) -> Tensor:
    """Non-saturating GAN loss ``-log σ(T)`` (ALI/BiGAN); *not* the KL form used for the ELBO.

    >>> round(gan_generator_loss(torch.zeros(3)).item(), 4)
    0.6931
    """
    return F.softplus(-logit).mean()


def denoiser_score(denoised: Tensor, noisy: Tensor, noise_std: float) -> Tensor:
    """Score estimate ``∇ log q_σ`` from a denoiser (Tweedie / Alain & Bengio): ``(F(z̃) − z̃) / σ²``.

    Args:
        denoised: the denoiser's output ``F(z̃)``.
        noisy: its input ``z̃``.
        noise_std: the corruption level ``σ`` the denoiser was trained at.

    >>> denoiser_score(torch.tensor([1.0]), torch.tensor([0.5]), 0.5)
    tensor([2.])
    """
    return (denoised - noisy) / noise_std**2


def denoising_loss(denoised: Tensor, clean: Tensor) -> Tensor:
    """Squared reconstruction error of a denoiser, summed over features, averaged over examples.

    >>> denoising_loss(torch.ones(2, 3), torch.zeros(2, 3))
    tensor(3.)
    """
    return (denoised - clean).pow(2).flatten(1).sum(1).mean()


def score_surrogate(z: Tensor, score: Tensor) -> Tensor:
    """Per-example surrogate whose gradient in ``z`` is ``score`` (held fixed): ``stopgrad(s)ᵀ z``.

    Added to a loss, it injects the estimated ``∇_z log q(z|x)`` — the entropy term an implicit
    encoder cannot differentiate itself — into the reparameterised gradient.

    >>> z = torch.tensor([[1.0, 2.0]], requires_grad=True)
    >>> score_surrogate(z, torch.tensor([[3.0, -1.0]])).sum().backward()
    >>> z.grad
    tensor([[ 3., -1.]])
    """
    return (score.detach() * z).flatten(1).sum(1)


def gaussian_moments(z: Tensor, min_std: float = 1e-4) -> Tuple[Tensor, Tensor]:
    """Per-example mean and std of ``z`` over its sample axis 0, with gradients stopped.

    Adaptive contrast (AVB) standardises ``q(z|x)`` by these moments before the discriminator
    sees it. Gradients are stopped so the moments act as a fixed reference distribution.

    Args:
        z: samples ``[num_samples, batch, latent_dim]``; needs ``num_samples >= 2``.
        min_std: floor on the std, so a collapsed posterior does not divide by zero.
    """
    if z.dim() != 3 or z.shape[0] < 2:
        raise ValueError(
            f"gaussian_moments needs samples shaped [num_samples >= 2, batch, latent_dim], got {tuple(z.shape)}"
        )
    z = z.detach()
    return z.mean(0), z.std(0).clamp_min(min_std)


def standard_normal_log_prob(z: Tensor) -> Tensor:
    """``log N(z; 0, I)`` summed over the last dimension.

    >>> round(standard_normal_log_prob(torch.zeros(1, 2)).item(), 4)
    -1.8379
    """
    return -0.5 * z.pow(2).sum(-1) - 0.5 * z.shape[-1] * math.log(2 * math.pi)


def diagonal_normal_log_prob(z: Tensor, mean: Tensor, std: Tensor) -> Tensor:
    """``log N(z; mean, diag(std²))`` summed over the last dimension."""
    return standard_normal_log_prob((z - mean) / std) - std.log().sum(-1)
