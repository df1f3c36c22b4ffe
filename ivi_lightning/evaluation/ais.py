"""Log-likelihood of a trained model: annealed importance sampling (AIS) and the IWAE bound.

AIS (Neal 2001; Wu et al. 2017 for decoder-based models) anneals from the prior to the
posterior along the geometric path ``log f_t(z) = log p(z) + β_t log p(x|z)``,
``0 = β_0 < … < β_T = 1``, moving every chain with an HMC transition that leaves ``f_t``
invariant. The log weight ``Σ_t (β_t − β_{t−1}) log p(x|z_{t−1})`` is an unbiased estimate of
``p(x)`` in expectation (so ``log`` of its chain average is a stochastic *lower* bound whose gap
shrinks as the number of temperatures grows).

Everything is batched over examples × chains (one tensor of ``batch · chains`` latents) and
stays on ``x``'s device. The HMC step size is adapted *per example* from the mean acceptance of
its chains: a step size adapted per chain from that chain's own acceptance leaves a bias that
does not vanish with more temperatures (measured on the Evaluation page of the docs), because
each chain's kernel then depends on its own past.

The IWAE bound ``log (1/K) Σ_k p(x, z_k) / q(z_k|x)`` needs an explicit ``q`` (the VAE's
``GaussianEncoder.moments``); it is a lower bound that tightens with ``K``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Optional, Tuple

import torch
from torch import Tensor, nn

from ivi_lightning.distributions import Likelihood, Prior, require_log_prob
from ivi_lightning.estimators import diagonal_normal_log_prob, tile_examples

SCHEDULES = ("sigmoid", "linear")


@dataclass
class AISResult:
    """What :func:`annealed_importance_sampling` returns.

    Attributes:
        log_marginal: per-example estimate of ``log p(x)``, ``[batch]`` (``logmeanexp`` of the
            chains' log weights).
        log_weights: the chains' log weights, ``[batch, chains]``.
        acceptance: per-example HMC acceptance rate averaged over chains and transitions, ``[batch]``.
        step_size: per-example HMC step size at the end of the run, ``[batch]``.
    """

    log_marginal: Tensor
    log_weights: Tensor
    acceptance: Tensor
    step_size: Tensor


def temperature_schedule(
    num_temperatures: int, schedule: str = "sigmoid", sharpness: float = 4.0, device: Any = None
) -> Tensor:
    """Inverse temperatures ``β_0 = 0 < … < β_T = 1``: ``num_temperatures + 1`` values (float64).

    ``"sigmoid"`` (Grosse et al. 2013) spends more temperatures near both ends, where the
    intermediate distributions change fastest; ``"linear"`` spaces them evenly.

    Args:
        num_temperatures: number ``T`` of annealing transitions (intermediate distributions).
        schedule: ``"sigmoid"`` or ``"linear"``.
        sharpness: ``δ`` of the sigmoid schedule ``σ(δ (2t/T − 1))``, rescaled to ``[0, 1]``.
        device: where to put the tensor.

    >>> temperature_schedule(4, "linear")
    tensor([0.0000, 0.2500, 0.5000, 0.7500, 1.0000], dtype=torch.float64)
    >>> b = temperature_schedule(100); bool(b[0] == 0 and b[-1] == 1 and (b.diff() > 0).all())
    True
    """
    if int(num_temperatures) <= 0:
        raise ValueError(
            f"num_temperatures must be a positive number of annealing steps, got {num_temperatures}"
        )
    if schedule not in SCHEDULES:
        raise ValueError(f"unknown temperature schedule {schedule!r}; choose one of {', '.join(SCHEDULES)}")
    t = torch.linspace(0.0, 1.0, int(num_temperatures) + 1, dtype=torch.float64, device=device)
    if schedule == "linear":
        return t
    if sharpness <= 0:
        raise ValueError(f"the sigmoid schedule's sharpness must be positive, got {sharpness}")
    s = torch.sigmoid(sharpness * (2 * t - 1))
    betas = (s - s[0]) / (s[-1] - s[0])
    betas[0], betas[-1] = 0.0, 1.0
    return betas


def require_densities(prior: Optional[Prior], likelihood: Optional[Likelihood], method: str) -> None:
    """Refuse a model without the prior and likelihood densities AIS and the IWAE bound need.

    Args:
        prior: the model's prior (``None``: not adopted yet).
        likelihood: the model's likelihood.
        method: who needs them, for the message (``"AIS"``, ``"AISCallback (on PCAdv)"``, ...).
    """
    for part, value in (("prior", prior), ("likelihood", likelihood)):
        if value is None:
            raise ValueError(
                f"{method} needs the model's {part}, got None (a learn_model=False algorithm adopts it from "
                "its data module at setup)"
            )
        require_log_prob(
            value,
            part,
            method,
            "This model assigns no computable likelihood to data. The IWAE bound needs the same densities; "
            "for an implicit model, compare samples instead (FID, ivi_lightning.evaluation.fid) or report "
            "the algorithm's plug-in ELBO estimate (model.elbo_estimate) where it has one.",
        )


def _repeat_examples(x: Tensor, times: int) -> Tensor:
    """``[batch, ...] -> [batch · times, ...]``, each example repeated ``times`` times in a row."""
    return x.repeat_interleave(times, dim=0)


def _log_terms(
    prior: Prior, likelihood: Likelihood, x_rep: Tensor, z: Tensor, beta: Tensor
) -> Tuple[Tensor, Tensor, Tensor]:
    """``log p(z)``, ``log p(x|z)`` and ``∇_z [log p(z) + β log p(x|z)]`` for every chain."""
    with torch.enable_grad():
        z = z.detach().requires_grad_(True)
        log_prior, log_lik = prior.log_prob(z), likelihood.log_prob(x_rep, z)
        (grad,) = torch.autograd.grad((log_prior + beta * log_lik).sum(), z)
    return log_prior.detach(), log_lik.detach(), grad


def annealed_importance_sampling(
    prior: Prior,
    likelihood: Likelihood,
    x: Tensor,
    num_temperatures: int = 1000,
    num_chains: int = 16,
    leapfrog_steps: int = 10,
    schedule: str = "sigmoid",
    initial_step_size: float = 0.05,
    target_acceptance: float = 0.65,
    adaptation_rate: float = 0.02,
    min_step_size: float = 1e-4,
    max_step_size: float = 1.0,
    progress: bool = False,
) -> AISResult:
    """AIS estimate of ``log p(x)`` for every example of ``x``, with HMC transitions.

    Chains start at prior samples and move through ``num_temperatures`` geometric
    intermediate distributions. After each transition, every example's step size is multiplied
    by ``1 + adaptation_rate`` if the mean acceptance of its chains exceeds
    ``target_acceptance``, else by ``1 − adaptation_rate`` (clamped to
    ``[min_step_size, max_step_size]``).

    Cost: ``num_temperatures · (leapfrog_steps + 1)`` gradient evaluations of the model on
    ``batch · num_chains`` latents; memory grows with ``batch · num_chains``, so split big test sets
    into batches. Put the model in ``eval()`` mode and on ``x``'s device first.

    Args:
        prior: ``p(z)`` with ``log_prob`` and ``sample``.
        likelihood: ``p(x|z)`` with ``log_prob``.
        x: observations ``[batch, *data_shape]``.
        num_temperatures: number of annealing transitions ``T`` (more: smaller bias, linear cost).
        num_chains: independent chains per example (their weights are averaged).
        leapfrog_steps: leapfrog steps per HMC transition.
        schedule: ``"sigmoid"`` or ``"linear"`` spacing of the inverse temperatures.
        initial_step_size: leapfrog step size every example starts with.
        target_acceptance: acceptance rate the step-size adaptation aims for.
        adaptation_rate: relative step-size change per transition.
        min_step_size: smallest step size the adaptation may reach.
        max_step_size: largest step size the adaptation may reach.
        progress: show a tqdm progress bar over the transitions.

    Returns:
        An :class:`AISResult` (``log_marginal`` is the per-example estimate).

    >>> from ivi_lightning.distributions import StandardNormalPrior
    >>> class Unit(Likelihood):  # x ~ N(z₁, 1): p(x) = N(x; 0, 2)
    ...     def log_prob(self, x, z):
    ...         return -0.5 * (x[:, 0] - z[:, 0]) ** 2 - 0.5 * math.log(2 * math.pi)
    >>> _ = torch.manual_seed(0)
    >>> result = annealed_importance_sampling(StandardNormalPrior(1), Unit(), torch.zeros(3, 1), 50, 8, 5)
    >>> exact = -0.5 * math.log(2 * math.pi * 2)
    >>> bool((result.log_marginal - exact).abs().max() < 0.05)
    True
    """
    # HMC needs gradients in z even when called under no_grad or inference mode (Trainer.test).
    with torch.inference_mode(False), torch.no_grad():
        return _ais(
            prior,
            likelihood,
            x.clone(),
            num_temperatures,
            num_chains,
            leapfrog_steps,
            schedule,
            initial_step_size,
            target_acceptance,
            adaptation_rate,
            min_step_size,
            max_step_size,
            progress,
        )


def _ais(
    prior: Prior,
    likelihood: Likelihood,
    x: Tensor,
    num_temperatures: int,
    num_chains: int,
    leapfrog_steps: int,
    schedule: str,
    initial_step_size: float,
    target_acceptance: float,
    adaptation_rate: float,
    min_step_size: float,
    max_step_size: float,
    progress: bool,
) -> AISResult:
    require_densities(prior, likelihood, "AIS")
    for name, value in (("num_chains", num_chains), ("leapfrog_steps", leapfrog_steps)):
        if int(value) <= 0:
            raise ValueError(f"{name} must be a positive integer, got {value}")
    if not 0.0 < target_acceptance < 1.0:
        raise ValueError(f"target_acceptance must lie in (0, 1), got {target_acceptance}")
    if not 0.0 < min_step_size <= initial_step_size <= max_step_size:
        raise ValueError(
            f"need 0 < min_step_size <= initial_step_size <= max_step_size, got {min_step_size}, "
            f"{initial_step_size}, {max_step_size}"
        )
    if not 0.0 < adaptation_rate < 1.0:
        raise ValueError(f"adaptation_rate must lie in (0, 1), got {adaptation_rate}")
    if x.dim() < 2 or x.shape[0] == 0:
        raise ValueError(f"x must be a non-empty batch [batch, *data_shape], got shape {tuple(x.shape)}")

    device, batch, chains = x.device, x.shape[0], int(num_chains)
    # Accumulate log weights in float64 where the device has it (MPS does not).
    acc_dtype = torch.float32 if device.type == "mps" else torch.float64
    betas = temperature_schedule(num_temperatures, schedule, device=device).to(acc_dtype)
    x_rep = _repeat_examples(x, chains)  # chain c of example b is row b·chains + c
    z = prior.sample(batch * chains)
    if z.device != device:
        raise ValueError(
            f"the prior samples on {z.device} but x is on {device}: move the model to x's device first "
            "(model.to(x.device))"
        )

    step = torch.full((batch, 1), float(initial_step_size), device=device, dtype=z.dtype)
    log_weights = torch.zeros(batch * chains, device=device, dtype=acc_dtype)
    accepted_total = torch.zeros(batch, device=device, dtype=acc_dtype)

    steps = range(1, len(betas))
    if progress:
        from tqdm.auto import tqdm

        steps = tqdm(steps, desc="AIS", unit="temperature")
    for t in steps:
        beta = betas[t].to(z.dtype)
        log_prior, log_lik, grad = _log_terms(prior, likelihood, x_rep, z, beta)
        log_weights += (betas[t] - betas[t - 1]) * log_lik.to(acc_dtype)

        # One HMC transition leaving f_t invariant, with this example's step size for all its chains.
        eps = step.repeat_interleave(chains, dim=0).view(-1, *([1] * (z.dim() - 1)))
        momentum = torch.randn_like(z)
        kinetic = 0.5 * momentum.pow(2).flatten(1).sum(1)
        current = log_prior + beta * log_lik
        z_new, p_new = z, momentum + 0.5 * eps * grad
        for leap in range(int(leapfrog_steps)):
            z_new = z_new + eps * p_new
            new_prior, new_lik, new_grad = _log_terms(prior, likelihood, x_rep, z_new, beta)
            p_new = p_new + (eps if leap < leapfrog_steps - 1 else 0.5 * eps) * new_grad
        proposed = new_prior + beta * new_lik
        log_accept = (proposed - 0.5 * p_new.pow(2).flatten(1).sum(1)) - (current - kinetic)
        log_accept = torch.nan_to_num(log_accept, nan=-math.inf)  # a diverged trajectory is rejected
        accept = torch.rand_like(log_accept).log() < log_accept
        z = torch.where(accept.view(-1, *([1] * (z.dim() - 1))), z_new, z)

        # Adapt one step size per example from the mean acceptance of its chains.
        mean_accept = accept.to(acc_dtype).view(batch, chains).mean(1)
        accepted_total += mean_accept
        factor = torch.where(mean_accept > target_acceptance, 1.0 + adaptation_rate, 1.0 - adaptation_rate)
        step = (step * factor.to(step.dtype).unsqueeze(1)).clamp(min_step_size, max_step_size)

    log_weights = log_weights.view(batch, chains)
    log_marginal = torch.logsumexp(log_weights, 1) - math.log(chains)
    return AISResult(log_marginal, log_weights, accepted_total / (len(betas) - 1), step.squeeze(1))


def ais_log_marginal(prior: Prior, likelihood: Likelihood, x: Tensor, **options: Any) -> Tensor:
    """Per-example AIS estimate of ``log p(x)``, ``[batch]``.

    Args:
        prior: ``p(z)`` with ``log_prob``.
        likelihood: ``p(x|z)`` with ``log_prob``.
        x: observations ``[batch, *data_shape]``.
        **options: see :func:`annealed_importance_sampling`.
    """
    return annealed_importance_sampling(prior, likelihood, x, **options).log_marginal


def _parts(
    model_or_encoder: Any, prior: Optional[Prior], likelihood: Optional[Likelihood]
) -> Tuple[Any, Prior, Likelihood]:
    """The encoder with ``moments`` and the model parts, from an algorithm or given separately."""
    encoder = model_or_encoder
    if not hasattr(encoder, "moments") and hasattr(model_or_encoder, "encoder"):
        encoder = model_or_encoder.encoder
        prior = prior if prior is not None else getattr(model_or_encoder, "prior", None)
        likelihood = likelihood if likelihood is not None else getattr(model_or_encoder, "likelihood", None)
    if not hasattr(encoder, "moments"):
        raise ValueError(
            "the IWAE bound needs an explicit Gaussian q(z|x) (an encoder with moments(x) -> (mean, std), "
            "e.g. the VAE's "
            f"GaussianEncoder), but {type(encoder).__name__} has none: implicit encoders have no density; "
            "use AIS "
            "(annealed_importance_sampling), which needs no q"
        )
    require_densities(prior, likelihood, "The IWAE bound")
    assert prior is not None and likelihood is not None  # checked just above
    return encoder, prior, likelihood


@torch.no_grad()
def iwae_bound(
    model_or_encoder: nn.Module,
    x: Tensor,
    num_samples: int = 100,
    prior: Optional[Prior] = None,
    likelihood: Optional[Likelihood] = None,
    chunk_size: Optional[int] = None,
) -> Tensor:
    """Importance-weighted bound ``log (1/K) Σ_k p(x, z_k) / q(z_k|x)``, ``z_k ~ q(z|x)``, per example.

    A lower bound on ``log p(x)`` in expectation that rises towards it as ``K`` grows
    (``K = 1`` is the ELBO).

    Args:
        model_or_encoder: an algorithm with ``encoder.moments`` (a VAE) and ``prior``/``likelihood``,
            or an encoder with ``moments(x) -> (mean, std)`` (then pass ``prior`` and ``likelihood``).
        x: observations ``[batch, *data_shape]``.
        num_samples: ``K``, importance samples per example.
        prior: ``p(z)``; taken from the model when not given.
        likelihood: ``p(x|z)``; taken from the model when not given.
        chunk_size: evaluate at most this many samples per example at once (bounds memory for a
            big ``K``); ``None``: all at once.

    Returns:
        ``[batch]`` bounds.

    >>> from ivi_lightning.distributions import StandardNormalPrior
    >>> class Prior1(StandardNormalPrior):
    ...     pass
    >>> class Exact(nn.Module):  # q = the exact posterior of x ~ N(z, 1): N(x/2, 1/2)
    ...     def moments(self, x):
    ...         return x / 2, torch.full_like(x, 0.5 ** 0.5)
    >>> class Unit(Likelihood):
    ...     def log_prob(self, x, z):
    ...         return -0.5 * (x[:, 0] - z[:, 0]) ** 2 - 0.5 * math.log(2 * math.pi)
    >>> bound = iwae_bound(Exact(), torch.ones(2, 1), 4, prior=Prior1(1), likelihood=Unit())
    >>> torch.allclose(bound, torch.full((2,), -0.25 - 0.5 * math.log(4 * math.pi)))  # exact q: tight
    True
    """
    if int(num_samples) <= 0:
        raise ValueError(f"num_samples must be a positive integer, got {num_samples}")
    if chunk_size is not None and int(chunk_size) <= 0:
        raise ValueError(f"chunk_size must be a positive integer or None, got {chunk_size}")
    encoder, prior, likelihood = _parts(model_or_encoder, prior, likelihood)
    num_samples = int(num_samples)
    chunk = num_samples if chunk_size is None else min(int(chunk_size), num_samples)
    mean, std = encoder.moments(x)
    batch = x.shape[0]
    pieces = []
    for start in range(0, num_samples, chunk):
        k = min(chunk, num_samples - start)
        z = mean.unsqueeze(0) + std.unsqueeze(0) * torch.randn(
            k, *mean.shape, device=mean.device, dtype=mean.dtype
        )  # [k, B, D]
        z_flat = z.reshape(k * batch, -1)
        x_rep = tile_examples(x, k)
        log_w = likelihood.log_prob(x_rep, z_flat) + prior.log_prob(z_flat)
        log_w = log_w.view(k, batch) - diagonal_normal_log_prob(z, mean.unsqueeze(0), std.unsqueeze(0))
        pieces.append(torch.logsumexp(log_w, 0))
    return torch.logsumexp(torch.stack(pieces), 0) - math.log(num_samples)
