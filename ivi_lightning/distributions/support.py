"""Priors with a declared support, any ``torch.distributions`` prior, and the standardised
unconstrained space in which the algorithms infer the parameters of a simulator.

A prior declares where its samples live through ``.support`` (a
``torch.distributions.constraints.Constraint``, as every ``torch.distributions.Distribution``
does). :class:`ParameterSpace` z-scores both sides of the simulated pairs, so encoders,
discriminators and denoisers work with unit-scale coordinates, and keeps every posterior sample
handed back inside the support, in the user's units: by mapping the support onto all of ``R^d``
with ``torch.distributions.biject_to``, or by redrawing the samples that fall outside it.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence, Tuple, Union

import torch
from torch import Tensor, nn
from torch.distributions import Distribution, biject_to, constraints
from torch.distributions.transforms import identity_transform

from ivi_lightning.distributions.base import DataShape, Likelihood, Prior, as_shape

#: How a :class:`ParameterSpace` keeps posterior samples inside a bounded support.
SUPPORT_MODES = ("transform", "reject")


class BoxUniform(Prior):
    """Uniform on the box ``[low, high]`` (as sbi's ``BoxUniform``), with a bounded ``support``.

    Args:
        low: lower corner, one value per dimension.
        high: upper corner, one value per dimension (each above ``low``).

    >>> prior = BoxUniform([-1.0, 0.0], [1.0, 4.0])
    >>> prior.sample(3).shape
    torch.Size([3, 2])
    >>> prior.log_prob(torch.tensor([[0.0, 1.0], [2.0, 1.0]]))  # −log 8 inside, −inf outside
    tensor([-2.0794,    -inf])
    """

    low: Tensor  # buffers: the box's corners
    high: Tensor

    def __init__(self, low: Union[Sequence[float], Tensor], high: Union[Sequence[float], Tensor]) -> None:
        low_t = torch.as_tensor(low, dtype=torch.get_default_dtype()).reshape(-1)
        high_t = torch.as_tensor(high, dtype=torch.get_default_dtype()).reshape(-1)
        if low_t.shape != high_t.shape or low_t.numel() == 0:
            raise ValueError(
                "BoxUniform needs low and high of the same non-zero length, "
                f"got {list(low_t.shape)} and {list(high_t.shape)}"
            )
        if not bool((high_t > low_t).all()):
            raise ValueError(
                "BoxUniform needs high > low in every dimension, "
                f"got low={low_t.tolist()}, high={high_t.tolist()}"
            )
        super().__init__(low_t.numel())
        # Not saved: the box is configuration, and an adopted prior must add no checkpoint keys.
        self.register_buffer("low", low_t, persistent=False)
        self.register_buffer("high", high_t, persistent=False)

    @property
    def support(self) -> constraints.Constraint:
        return constraints.independent(constraints.interval(self.low, self.high), 1)

    def sample(self, num_samples: int) -> Tensor:
        return self.low + (self.high - self.low) * torch.rand(
            num_samples, self.dim, device=self.low.device, dtype=self.low.dtype
        )

    def log_prob(self, z: Tensor) -> Tensor:
        inside = ((z >= self.low) & (z <= self.high)).all(-1)
        log_volume = (self.high - self.low).log().sum()
        return torch.where(inside, -log_volume, torch.full_like(log_volume, -math.inf)).expand(z.shape[:-1])


class DistributionPrior(Prior):
    """Any ``torch.distributions.Distribution`` over vectors (e.g. sbi's ``BoxUniform``, an
    ``Independent(Uniform)``, a ``MultivariateNormal``) as a :class:`Prior`.

    Args:
        distribution: a distribution whose samples are vectors (``event_shape == [dim]``), or a
            batch of ``dim`` scalar distributions (made ``Independent``).

    >>> d = torch.distributions.Independent(torch.distributions.Uniform(torch.zeros(2), torch.ones(2)), 1)
    >>> prior = DistributionPrior(d)
    >>> prior.dim, prior.sample(4).shape, prior.support.event_dim
    (2, torch.Size([4, 2]), 1)
    """

    def __init__(self, distribution: Distribution) -> None:
        if not isinstance(distribution, Distribution):
            raise TypeError(
                "DistributionPrior wraps a torch.distributions.Distribution, "
                f"got {type(distribution).__name__}"
            )
        if len(distribution.event_shape) == 0 and len(distribution.batch_shape) == 1:
            distribution = torch.distributions.Independent(distribution, 1)
        if len(distribution.event_shape) != 1 or len(distribution.batch_shape) != 0:
            raise ValueError(
                "a prior must draw vectors: event_shape [dim] and no batch shape, got "
                f"event_shape {list(distribution.event_shape)}, batch_shape {list(distribution.batch_shape)}"
            )
        super().__init__(distribution.event_shape[0])
        self.distribution = distribution

    @property
    def support(self) -> constraints.Constraint:
        support = self.distribution.support
        if support is None:
            raise ValueError(
                f"the prior's distribution {type(self.distribution).__name__} declares no support "
                "(its .support is None): a prior must declare where its samples live"
            )
        return support

    def sample(self, num_samples: int) -> Tensor:
        return self.distribution.sample((num_samples,)).to(self._anchor.device)

    def log_prob(self, z: Tensor) -> Tensor:
        return self.distribution.log_prob(z)


def as_prior(prior: Union[Prior, Distribution]) -> Prior:
    """``prior`` as a :class:`Prior`: ours as it is, a ``torch.distributions.Distribution`` wrapped.

    >>> as_prior(torch.distributions.MultivariateNormal(torch.zeros(3), torch.eye(3))).dim
    3
    """
    if isinstance(prior, Prior):
        return prior
    if isinstance(prior, Distribution):
        return DistributionPrior(prior)
    raise TypeError(
        "a prior must be an ivi_lightning Prior or a torch.distributions.Distribution, "
        f"got {type(prior).__name__}: "
        "wrap your sampler in a Prior subclass (sample(n) -> [n, dim]) or pass e.g. BoxUniform(low, high)"
    )


def support_of(prior: Prior) -> constraints.Constraint:
    """The support a prior declares (``.support``), else all of ``R^dim``."""
    return getattr(prior, "support", constraints.real_vector)


def support_bounds(support: constraints.Constraint, dim: int) -> Tuple[Tensor, Tensor]:
    """Per-dimension ``(lower, upper)`` bounds of a box-shaped support (``±inf`` where unbounded).

    Supports: all of ``R^d``, intervals (a box), and half-lines (``positive``, ``greater_than``,
    ``less_than``), each possibly ``independent``.

    >>> support_bounds(constraints.independent(constraints.interval(0.0, 2.0), 1), 2)
    (tensor([0., 0.]), tensor([2., 2.]))
    """
    base = support
    while isinstance(base, constraints.independent):
        base = base.base_constraint
    full = lambda value: torch.as_tensor(value, dtype=torch.get_default_dtype()).expand(dim).clone()
    if base in (constraints.real, constraints.real_vector):
        return full(-math.inf), full(math.inf)
    if isinstance(base, (constraints.interval, constraints.half_open_interval)):
        return full(base.lower_bound), full(base.upper_bound)
    if isinstance(base, (constraints.greater_than, constraints.greater_than_eq)):
        return full(base.lower_bound), full(math.inf)
    if isinstance(base, constraints.less_than):
        return full(-math.inf), full(base.upper_bound)
    raise ValueError(
        "a prior's support must be R^d, a box or a half-line for posterior samples to be mapped into it, "
        f"got {support}: "
        "reparameterise the prior (sample an unconstrained vector and transform it in the simulator)"
    )


def bounds_constraint(lower: Tensor, upper: Tensor) -> constraints.Constraint:
    """The constraint with these per-dimension bounds: ``R^d``, a box or a half-line.

    >>> bounds_constraint(torch.tensor([0.0]), torch.tensor([math.inf]))
    IndependentConstraint(GreaterThan(lower_bound=tensor([0.])), 1)
    """
    low_finite, high_finite = torch.isfinite(lower), torch.isfinite(upper)
    if not bool(low_finite.any() or high_finite.any()):
        return constraints.real_vector
    if bool(low_finite.all() and high_finite.all()):
        return constraints.independent(constraints.interval(lower, upper), 1)
    if bool(low_finite.all() and not high_finite.any()):
        return constraints.independent(constraints.greater_than(lower), 1)
    if bool(high_finite.all() and not low_finite.any()):
        return constraints.independent(constraints.less_than(upper), 1)
    raise ValueError(
        "every dimension of the support must be bounded alike (all boxes, all half-lines or none), "
        f"got lower={lower.tolist()}, "
        f"upper={upper.tolist()}: give the prior one kind of support"
    )


class ParameterSpace(nn.Module):
    """The coordinates an algorithm infers in: z-scored data, and z-scored (unconstrained) parameters.

    ``z = (u − m_u) / s_u`` and ``x̃ = (x − m_x) / s_x``; the means and stds come from simulated
    pairs (:meth:`fit`). How posterior samples are kept inside a bounded support is ``support_mode``:

    * ``"transform"``: ``u = b⁻¹(θ)`` with ``b = biject_to(support)``, so every ``z`` maps to a
      ``θ`` inside the support. A posterior with mass against a bound is stretched into a long tail.
    * ``"reject"``: ``u = θ`` (only z-scored), as sbi's NPE does; a draw outside the support is
      redrawn (:func:`rejection_sample`). A posterior keeps its shape against a bound.

    Until fitted it is the identity. Its statistics and bounds are buffers: they are saved with the
    model, so a checkpoint samples in the user's units without the data module.

    Args:
        latent_dim: size of ``θ``.
        data_shape: shape of one observation ``x``.
        support_mode: ``"transform"`` or ``"reject"`` (see above).

    >>> space = ParameterSpace(1, 1)
    >>> space.fit(torch.rand(1000, 1) * 2, torch.randn(1000, 1) * 5 + 3, constraints.interval(0.0, 2.0))
    >>> theta = space.to_parameter(torch.randn(5, 1) * 10)
    >>> bool(((theta > 0) & (theta < 2)).all())
    True
    """

    # Buffers (saved with the model): statistics of the fitted pairs and the support's bounds.
    data_mean: Tensor
    data_std: Tensor
    latent_mean: Tensor
    latent_std: Tensor
    lower: Tensor
    upper: Tensor

    def __init__(self, latent_dim: int, data_shape: DataShape, support_mode: str = "transform") -> None:
        super().__init__()
        if support_mode not in SUPPORT_MODES:
            raise ValueError(f"support_mode must be one of {', '.join(SUPPORT_MODES)}, got {support_mode!r}")
        self.support_mode = support_mode
        shape = as_shape(data_shape)
        self.register_buffer("data_mean", torch.zeros(shape))
        self.register_buffer("data_std", torch.ones(shape))
        self.register_buffer("latent_mean", torch.zeros(latent_dim))
        self.register_buffer("latent_std", torch.ones(latent_dim))
        self.register_buffer("lower", torch.full((latent_dim,), -math.inf))
        self.register_buffer("upper", torch.full((latent_dim,), math.inf))

    @property
    def rejects(self) -> bool:
        """Whether draws outside the support are redrawn (``support_mode="reject"``)."""
        return self.support_mode == "reject"

    @property
    def bijection(self) -> torch.distributions.Transform:
        """``u ↦ θ``: unconstrained ``R^d`` onto the support (``biject_to`` of its constraint), or the
        identity with ``support_mode="reject"``."""
        if self.rejects:
            return identity_transform
        return biject_to(bounds_constraint(self.lower, self.upper))

    def inside(self, theta: Tensor) -> Tensor:
        """Whether each parameter vector (last dimension) lies inside the support's bounds."""
        lower, upper = self.lower.to(theta.dtype), self.upper.to(theta.dtype)
        return ((theta >= lower) & (theta <= upper)).all(-1)

    @torch.no_grad()
    def fit(
        self,
        theta: Tensor,
        x: Tensor,
        support: constraints.Constraint = constraints.real_vector,
        min_std: float = 1e-6,
    ) -> None:
        """Statistics of simulated pairs ``(θ, x)``: bounds from ``support``, means and stds of ``u``
        and ``x``.

        Args:
            theta: parameters ``[n, latent_dim]`` (inside ``support``).
            x: their simulations ``[n, *data_shape]``.
            support: the prior's support.
            min_std: a feature whose std is below this is left unscaled (std 1).
        """
        lower, upper = support_bounds(support, self.latent_mean.numel())
        self.lower.copy_(lower)
        self.upper.copy_(upper)
        theta = theta.to(self.lower)
        u = self.bijection.inv(theta)
        if not bool(torch.isfinite(u).all() and self.inside(theta).all()):
            raise ValueError(
                "some simulated parameters lie on or outside the prior's support: "
                "the prior's samples must lie inside its support"
            )
        for values, mean, std in (
            (u, self.latent_mean, self.latent_std),
            (x.to(self.data_mean), self.data_mean, self.data_std),
        ):
            mean.copy_(values.mean(0))
            spread = values.std(0)
            std.copy_(torch.where(spread > min_std, spread, torch.ones_like(spread)))

    def standardize(self, x: Tensor) -> Tensor:
        """Observations in the algorithm's coordinates: ``(x − m_x) / s_x``."""
        return (x - self.data_mean) / self.data_std

    def to_latent(self, theta: Tensor) -> Tensor:
        """Parameters (inside the support) to the algorithm's latent: ``(b⁻¹(θ) − m_u) / s_u``."""
        return (self.bijection.inv(theta) - self.latent_mean) / self.latent_std

    def to_parameter(self, z: Tensor) -> Tensor:
        """The algorithm's latent to parameters: ``b(m_u + s_u z)``, inside the support (with
        ``support_mode="reject"``, possibly outside: see :func:`rejection_sample`)."""
        theta = self.bijection(self.latent_mean + self.latent_std * z)
        if self.rejects:
            return theta
        # In float32 a squashing bijection rounds a large |u| onto the bound itself (sigmoid(17) == 1):
        # keep every draw strictly inside.
        inf = torch.tensor(float("inf"), dtype=theta.dtype, device=theta.device)
        lower, upper = self.lower.to(theta.dtype), self.upper.to(theta.dtype)
        return theta.clamp(torch.nextafter(lower, inf), torch.nextafter(upper, -inf))

    def log_abs_det_jacobian(self, z: Tensor) -> Tensor:
        """``log |det ∂θ/∂z|`` per row: what a density on ``θ`` gains as a density on ``z``."""
        u = self.latent_mean + self.latent_std * z
        log_det = self.bijection.log_abs_det_jacobian(u, self.bijection(u))
        log_det = (
            log_det.sum(-1) if log_det.dim() == z.dim() else log_det
        )  # elementwise vs. independent transforms
        return log_det + self.latent_std.log().sum()


def rejection_sample(
    draw: Callable[[int], Tensor],
    inside: Callable[[Tensor], Tensor],
    num_samples: int,
    min_acceptance: float = 1e-3,
) -> Tensor:
    """``num_samples`` draws per column of ``draw`` that satisfy ``inside``, the others redrawn.

    Args:
        draw: ``m -> [m, batch, dim]``, ``m`` draws for each of ``batch`` observations.
        inside: ``[m, batch, dim] -> [m, batch]``, whether each draw is kept.
        num_samples: draws wanted per observation.
        min_acceptance: give up once an observation has kept fewer than this share of its draws
            (after at least ``num_samples / min_acceptance`` of them).

    Raises:
        RuntimeError: an observation's acceptance fell below ``min_acceptance``.

    >>> draws = rejection_sample(lambda m: torch.randn(m, 3, 1), lambda t: t[..., 0] > 0, 100)
    >>> draws.shape, bool((draws > 0).all())
    (torch.Size([100, 3, 1]), True)
    """
    kept: list = []
    have, drawn, size = None, 0, num_samples
    while have is None or int(have.min()) < num_samples:
        theta = draw(size)
        accept = inside(theta)
        drawn += size
        have = accept.sum(0) if have is None else have + accept.sum(0)
        kept.append((theta, accept))
        rate = float(have.min()) / drawn
        if rate < min_acceptance and drawn >= num_samples / min_acceptance:
            raise RuntimeError(
                f"only {rate:.2%} of the posterior's draws lie inside the prior's support for some "
                "observation: the posterior has not learnt the support (train longer, or use "
                "support_mode='transform', which keeps every draw inside)"
            )
        # Redraw only about what is missing at the acceptance so far (each draw may be costly).
        missing = num_samples - int(have.min())
        size = min(num_samples, math.ceil(1.2 * missing / max(rate, min_acceptance)))
    columns = []
    for b in range(kept[0][0].shape[1]):
        column = torch.cat([theta[accept[:, b], b] for theta, accept in kept])
        columns.append(column[:num_samples])
    return torch.stack(columns, 1)


def simulate_with(simulator: Union[Likelihood, Callable[[Tensor], Tensor]]) -> Callable[[Tensor], Tensor]:
    """``θ -> x`` of a simulator given as a function or as a :class:`Likelihood` (its ``sample``)."""
    return simulator.sample if isinstance(simulator, Likelihood) else simulator


class _SpaceView:
    """Holds an algorithm's :class:`ParameterSpace` without owning it: the algorithm registers (and
    saves) it, so a part seen in that space must not add it to the state dict a second time."""

    _held: Tuple[ParameterSpace]

    @property
    def space(self) -> ParameterSpace:
        return self._held[0]


class LatentPrior(_SpaceView, Prior):
    """A prior on ``θ`` seen in a :class:`ParameterSpace`'s latent ``z``: samples ``to_latent(θ)``,
    density ``p(θ(z)) |det ∂θ/∂z|``.

    Args:
        prior: the prior on ``θ``, in the user's units.
        space: the parameter space.
    """

    def __init__(self, prior: Prior, space: ParameterSpace) -> None:
        super().__init__(prior.dim)
        self.prior = prior
        self._held = (space,)

    def sample(self, num_samples: int) -> Tensor:
        return self.space.to_latent(self.prior.sample(num_samples).to(self.space.latent_mean))

    def log_prob(self, z: Tensor) -> Tensor:
        return self.prior.log_prob(self.space.to_parameter(z)) + self.space.log_abs_det_jacobian(z)


class SimulatorLikelihood(_SpaceView, Likelihood):
    """A simulator ``θ -> x`` (sample only) seen in a :class:`ParameterSpace`:
    ``x̃ = standardize(simulator(θ(z)))``.

    Args:
        simulator: a callable ``θ [n, dim] -> x [n, *data_shape]`` (or a :class:`Likelihood`, its
            ``sample``).
        space: the parameter space.
    """

    def __init__(self, simulator, space: ParameterSpace) -> None:
        super().__init__()
        self.simulator = simulator
        self._held = (space,)

    def sample(self, z: Tensor) -> Tensor:
        return self.space.standardize(simulate_with(self.simulator)(self.space.to_parameter(z)).to(z))
