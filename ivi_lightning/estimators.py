"""The shared maths of implicit variational inference, as small pure functions.

Every algorithm in :mod:`ivi_lightning.algorithms` calls these; none of them holds state.
Notation follows the docs' Concepts page (``docs/concepts.md``): ``T`` is a discriminator logit estimating a
log density
ratio, ``F`` a denoiser, ``σ`` its corruption level.
"""

from __future__ import annotations

import math
from typing import Callable, Dict, Mapping, Tuple, Union

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


def forward_kl_encoder_loss(logit: Tensor, max_weight: float = 10.0) -> Tensor:
    """Encoder loss of the forward KL ``KL[p ‖ q]`` through a frozen log-ratio ``T ≈ log q/p`` (f-GAN form).

    The variational form ``sup_V E_p[V] − E_q[f*(V)]`` with ``f(u) = u log u`` has its optimum at
    ``V* = 1 − T`` and ``f*(v) = e^{v−1}``, so the encoder minimises ``−E_q[e^{−T}]``: each sample
    descends ``T`` with weight ``p/q = e^{−T}``, largest where ``q`` puts too little mass (mode
    covering, where the reverse KL's ``E_q[T]`` is mode-seeking). The weights are normalised to
    mean 1 over the batch and capped at ``max_weight``, which rescales the step without turning it.

    Args:
        logit: ``T`` at encoder samples, ``[batch]``.
        max_weight: cap on a sample's normalised weight.

    >>> t = torch.tensor([0.0, 0.0], requires_grad=True)
    >>> forward_kl_encoder_loss(t).backward()
    >>> t.grad  # equal ratios: equal weights, the gradient of the mean of T
    tensor([0.5000, 0.5000])
    """
    with torch.no_grad():
        weight = torch.softmax(-logit.float(), 0) * logit.numel()
        weight = weight.clamp_max(max_weight).to(logit.dtype)
    return (weight * logit).mean()


def denoiser_score(denoised: Tensor, noisy: Tensor, noise_std: Union[float, Tensor]) -> Tensor:
    """Score estimate ``∇ log q_σ`` from a denoiser (Tweedie / Alain & Bengio): ``(F(z̃) − z̃) / σ²``.

    Args:
        denoised: the denoiser's output ``F(z̃)``.
        noisy: its input ``z̃``.
        noise_std: the corruption level ``σ`` the denoiser was trained at.

    >>> denoiser_score(torch.tensor([1.0]), torch.tensor([0.5]), 0.5)
    tensor([2.])
    """
    return (denoised - noisy) / noise_std**2


def reverse_diffusion(denoise: Callable[[Tensor, float], Tensor], z: Tensor, noise_levels: Tensor) -> Tensor:
    """Draws of ``p`` from draws ``z`` of ``p`` smoothed at the first level, by the reverse-time
    variance-exploding SDE (Song et al., 2021) down the decreasing ``noise_levels``.

    Each step from ``σ`` to ``σ'`` moves along the smoothed score ``(F(z, σ) − z)/σ²`` for
    ``σ² − σ'²`` and adds noise of that variance; the last denoised mean ``F(z, σ_min)``
    (Tweedie) removes the remaining smoothing.

    Args:
        denoise: ``F(z̃, σ)``, the denoised mean of ``z̃`` corrupted at level ``σ``.
        z: draws of ``p`` convolved with ``N(0, noise_levels[0]²)``.
        noise_levels: decreasing corruption levels, ``[num_levels]``.

    >>> denoise = lambda z, s: z / (1 + s**2)  # exact for p = N(0, 1)
    >>> _ = torch.manual_seed(0)
    >>> z = reverse_diffusion(denoise, 2**0.5 * torch.randn(20000, 1), torch.logspace(0, -2, 200))
    >>> round(z.std().item(), 1)
    1.0
    """
    levels = noise_levels.tolist()
    for sigma, sigma_next in zip(levels[:-1], levels[1:]):
        step = sigma**2 - sigma_next**2
        z = z + step * denoiser_score(denoise(z, sigma), z, sigma) + step**0.5 * torch.randn_like(z)
    return denoise(z, levels[-1])


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
            "gaussian_moments needs samples shaped [num_samples >= 2, batch, latent_dim], got "
            f"{tuple(z.shape)}"
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


def unrolled_sgd_steps(
    loss_fn: Callable[[Dict[str, Tensor]], Tensor], params: Mapping[str, Tensor], steps: int, lr: float
) -> Dict[str, Tensor]:
    """``steps`` plain gradient steps on ``loss_fn`` that keep the graph (``create_graph=True``).

    The returned parameters are differentiable functions of whatever ``loss_fn`` depends on
    besides ``params`` (e.g. a generator's ``θ`` through the samples it draws), so a loss
    evaluated at them can be back-propagated through the whole optimisation (reverse-mode
    differentiation, as in JC-Adv-RMD and unrolled GANs). ``params`` enter as constants:
    they are detached, so no gradient reaches the tensors passed in.

    Args:
        loss_fn: ``params -> scalar loss``; called once per step (it may draw fresh samples).
        params: name → starting tensor (e.g. ``dict(module.named_parameters())``).
        steps: number of unrolled steps ``K``, positive.
        lr: step size, positive.

    >>> a = torch.tensor(1.0, requires_grad=True)
    >>> out = unrolled_sgd_steps(lambda p: (p["w"] - a) ** 2, {"w": torch.tensor(0.0)}, steps=1, lr=0.25)
    >>> out["w"]  # 0 − 0.25 · 2 (0 − 1)
    tensor(0.5000, grad_fn=<SubBackward0>)
    >>> torch.autograd.grad(out["w"], a)  # d w₁ / d a = 2 lr
    (tensor(0.5000),)
    """
    if int(steps) <= 0:
        raise ValueError(f"unrolled_sgd_steps needs a positive number of steps, got {steps}")
    if lr <= 0:
        raise ValueError(f"unrolled_sgd_steps needs a positive step size, got {lr}")
    params = {name: value.detach().requires_grad_(True) for name, value in params.items()}
    with torch.enable_grad():  # the inner steps need gradients even when called under no_grad
        for _ in range(int(steps)):
            grads = torch.autograd.grad(loss_fn(params), list(params.values()), create_graph=True)
            params = {name: value - lr * grad for (name, value), grad in zip(params.items(), grads)}
    return params


def input_gradient(fn: Callable[[Tensor], Tensor], z: Tensor, create_graph: bool = False) -> Tensor:
    """``∇_z Σ fn(z)``: e.g. a discriminator's ``∇_z T(x, z)``, its estimate of a score difference.

    ``z`` is detached first, so the result does not reach back into whatever produced ``z``.
    With ``create_graph=True`` the gradient itself can be differentiated (gradient penalties).

    Args:
        fn: ``z -> per-example values``.
        z: where to differentiate, ``[batch, ...]``.
        create_graph: keep the graph of the gradient.

    >>> input_gradient(lambda z: (z ** 2).sum(1), torch.tensor([[1.0, -2.0]]))
    tensor([[ 2., -4.]])
    """
    with torch.enable_grad():
        z = z.detach().requires_grad_(True)
        (grad,) = torch.autograd.grad(fn(z).sum(), z, create_graph=create_graph)
    return grad


def joint_gradient_penalty(fn: Callable[[Tensor, Tensor], Tensor], x: Tensor, z: Tensor) -> Tensor:
    """``E ‖∇_{x,z} fn(x, z)‖²`` over the batch, differentiable in ``fn``'s parameters.

    With ``fn`` a discriminator and ``(x, z)`` samples of its positive class this is R1's penalty
    (Mescheder et al., 2018, times ``2/γ``): it flattens ``T`` where the positives lie, which damps
    the discriminator's oscillation around them without moving its optimum where the two
    distributions agree. ``x`` and ``z`` are detached first.

    Args:
        fn: ``(x, z) -> per-example values``, e.g. a joint discriminator's logit.
        x: ``[batch, ...]``.
        z: ``[batch, ...]``.

    >>> linear = lambda x, z: 3 * x.sum(1) + 4 * z.sum(1)
    >>> joint_gradient_penalty(linear, torch.zeros(5, 1), torch.ones(5, 1))  # ‖(3, 4)‖²
    tensor(25.)
    """
    with torch.enable_grad():
        x, z = x.detach().requires_grad_(True), z.detach().requires_grad_(True)
        grad_x, grad_z = torch.autograd.grad(fn(x, z).sum(), (x, z), create_graph=True)
    return (grad_x.pow(2).flatten(1).sum(1) + grad_z.pow(2).flatten(1).sum(1)).mean()


def gumbel_keys(log_weights: Tensor) -> Tensor:
    """``log_weights + G``, ``G`` standard Gumbel noise (float64): the ``n`` largest keys index ``n``
    distinct draws with probability ``∝ exp(log_weights)``, without replacement (Gumbel-top-k).

    Keys of separate batches of proposals compare with each other, so the ``n`` best of several
    batches are the ``n`` best of their union: the draw can run batch by batch in bounded memory.

    Args:
        log_weights: unnormalised log weights, finite or ``−inf`` (weight 0).

    >>> gumbel_keys(torch.tensor([0.0, -math.inf]))[1].item()
    -inf
    """
    log_weights = log_weights.detach()
    if torch.isnan(log_weights).any() or (log_weights == math.inf).any():
        raise ValueError("resampling needs log weights finite or −inf (weight 0), got NaN or +inf")
    return log_weights.double() - torch.empty_like(log_weights, dtype=torch.float64).exponential_().log()


def importance_resample(log_weights: Tensor, num_samples: int) -> Tensor:
    """Indices of ``num_samples`` distinct proposals, drawn with probability ``∝ exp(log_weights)``.

    Sampling-importance-resampling (Rubin, 1988): from ``N`` proposals of ``p`` with
    ``log_weights ≈ log q/p`` (up to a constant), the kept proposals are approximately samples of
    ``q``, the better the larger ``N`` against ``num_samples``. They are drawn without replacement
    (:func:`gumbel_keys`), as Gelman et al.'s *Bayesian Data Analysis* advises: a proposal whose
    weight is overestimated, as a discriminator's extrapolated ratio can be, is kept once rather
    than filling the sample with copies of itself. Where ``p`` never proposes, nothing of ``q``
    comes back.

    Args:
        log_weights: ``[N]`` unnormalised log importance weights (``−inf``: weight 0).
        num_samples: how many proposals to keep; at most the number with a positive weight.

    >>> sorted(importance_resample(torch.tensor([0.0, -math.inf, 50.0, 1.0]), 3).tolist())
    [0, 2, 3]
    """
    keys = gumbel_keys(log_weights.flatten())
    candidates = int(torch.isfinite(keys).sum()) if num_samples > 0 else 0
    if not 0 < num_samples <= candidates:
        raise ValueError(
            f"importance_resample keeps num_samples distinct proposals of positive weight: asked for "
            f"{num_samples}, of {candidates} such proposals (of {keys.numel()}); draw more proposals"
        )
    return torch.topk(keys, num_samples).indices


def scaled_denoising_loss(denoised: Tensor, clean: Tensor, noise_std: Union[float, Tensor]) -> Tensor:
    """:func:`denoising_loss` in units of the corruption level: ``E ‖(F(ũ) − u)/σ‖²``.

    A joint denoiser corrupts its blocks at different levels; measuring each block's error in
    its own ``σ`` keeps both regression targets of unit scale, so neither block dominates.

    >>> scaled_denoising_loss(torch.ones(2, 3), torch.zeros(2, 3), 0.5)
    tensor(12.)
    """
    return denoising_loss(denoised / noise_std, clean / noise_std)


def tile_examples(x: Tensor, num_samples: int) -> Tensor:
    """``x`` (``[batch, ...]``) stacked ``num_samples`` times along the batch: ``[num_samples · batch, ...]``,
    row ``j · batch + i`` being example ``i`` (the layout of ``num_samples`` draws per example, flattened).

    >>> tile_examples(torch.tensor([[1], [2]]), 3).flatten().tolist()
    [1, 2, 1, 2, 1, 2]
    """
    return x.unsqueeze(0).expand(num_samples, *x.shape).reshape(num_samples * x.shape[0], *x.shape[1:])
