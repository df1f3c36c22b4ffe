"""The parts an algorithm holds, and what it checks of them and of its data before it trains on
them, so that a wrong part ends in one error naming it (not in a shape error deep inside an update).

* :data:`PART_NAMES`: the one list of part attributes.
* :func:`check_model`: at construction and when a known model is adopted: every part initialised,
  a density wherever the algorithm needs one, the prior's dimension.
* :func:`check_initialised`: a part whose ``__init__`` skipped ``super().__init__``.
* :func:`check_parts`: at setup, the parts run once on a probe of two examples, in a private
  random stream (training's is untouched): the shapes of ``prior.sample`` and ``prior.log_prob``,
  ``likelihood.sample`` and ``likelihood.log_prob`` and the encoder's output (a simulator data
  module's simulator is not run: its budget is the user's, and the data module checks its output).
* :func:`check_bernoulli_data`: on the first training batch, data a Bernoulli likelihood cannot model.
* :func:`density_alternative`: which algorithms need no density of a part.
* :func:`check_integers`: integer hyperparameters given as non-integers.
"""

from __future__ import annotations

import numbers
from typing import Any, List, Mapping, Sequence

import torch
from torch import Tensor, nn

from ivi_lightning.distributions import BernoulliLikelihood, has_log_prob, require_log_prob
from ivi_lightning.distributions.support import SimulatorLikelihood
from ivi_lightning.numbers import is_whole_number

#: Every part an algorithm may hold, model first: never hyperparameters, each a network or distribution.
PART_NAMES = ("prior", "likelihood", "encoder", "discriminator", "denoiser", "model_denoiser")
MODEL_PARTS = PART_NAMES[:2]
PROBE = 2  # examples in the probe batch
INTEGER_HYPERPARAMETERS = ("latent_dim", "aux_steps", "updates_per_batch", "noise_dim", "noise_components")
#: Algorithms that need no density of a part, named when an algorithm is given a part without one.
NO_DENSITY_NEEDED = {
    "prior": "PCAdv(prior_aware=False), JCAdv or JCDen",
    "likelihood": "JCAdv or JCDen",
}


def density_alternative(part: str) -> str:
    """The advice for a ``part`` without a density: algorithms that need none of it."""
    return f"Use {NO_DENSITY_NEEDED[part]}, which need no density of the {part}."


def check_integers(hparams: Mapping[str, Any]) -> None:
    """Refuse a non-integer value (``latent_dim=2.9``) of an integer hyperparameter, or in ``hidden``."""
    for name in INTEGER_HYPERPARAMETERS:
        value = hparams.get(name)
        if value is not None and (not isinstance(value, numbers.Integral) or isinstance(value, bool)):
            raise ValueError(f"{name} must be an integer, got {value!r}")
    hidden = hparams.get("hidden")
    if hidden is not None and (
        isinstance(hidden, (str, bytes, numbers.Number)) or any(not is_whole_number(h, 1) for h in hidden)
    ):
        raise ValueError(f"hidden must be a list of positive integer layer sizes, got {hidden!r}")


def check_model(algorithm: Any) -> None:
    """Refuse a part that was not initialised, a prior or likelihood without the density
    ``algorithm`` needs of it (naming algorithms that need none), or a prior over latents of another
    size than ``latent_dim``. A part still ``None`` (a known model not yet adopted) is skipped."""
    for part in (*MODEL_PARTS, "encoder"):
        check_initialised(getattr(algorithm, part, None), part)
    name = type(algorithm).__name__
    for part, needed in zip(MODEL_PARTS, (algorithm.needs_prior_density, algorithm.needs_likelihood_density)):
        if getattr(algorithm, part) is not None and needed:
            require_log_prob(getattr(algorithm, part), part, name, density_alternative(part))
    dim = getattr(algorithm.prior, "dim", algorithm.latent_dim)
    if algorithm.prior is not None and dim != algorithm.latent_dim:
        raise ValueError(
            f"the prior is over {dim}-dimensional latents but latent_dim={algorithm.latent_dim}: "
            "set latent_dim to the prior's dimension"
        )


def check_initialised(part: Any, role: str) -> None:
    """Refuse a module whose ``__init__`` did not call ``super().__init__`` (it cannot hold parameters)."""
    if not isinstance(part, nn.Module):
        return
    try:
        list(part.parameters())
    except AttributeError:
        base = "Prior" if role == "prior" else "Likelihood" if role == "likelihood" else "nn.Module"
        call = "super().__init__(dim)" if role == "prior" else "super().__init__()"
        raise ValueError(
            f"the {role} {type(part).__name__} is not initialised: its __init__ must call {call} "
            f"({base}) before anything else"
        ) from None


def _expect(value: Any, expected: Sequence[int], what: str, algorithm: str, fix: str) -> None:
    shape = list(value.shape) if isinstance(value, Tensor) else None
    if shape != list(expected):
        got = f"shape {shape}" if shape is not None else f"a {type(value).__name__}, not a tensor"
        raise ValueError(f"{algorithm}: {what} returned {got}, expected {list(expected)}: {fix}")


def check_parts(algorithm: Any) -> None:
    """Run the parts once on ``PROBE`` examples and refuse a wrong output shape, naming the part,
    the expected and the actual shape. Runs in eval mode, without gradients, in a private random
    stream; the parts' training modes and the global random state are left as they were."""
    name, n, k, shape = type(algorithm).__name__, PROBE, algorithm.latent_dim, list(algorithm.data_shape)
    prior, likelihood, encoder = algorithm.prior, algorithm.likelihood, algorithm.encoder
    parts: List[nn.Module] = [p for p in (prior, likelihood, encoder) if isinstance(p, nn.Module)]
    modes = [p.training for p in parts]
    cuda = torch.cuda.is_available() and torch.cuda.is_initialized()
    with torch.random.fork_rng(devices=[torch.cuda.current_device()] if cuda else []), torch.no_grad():
        torch.manual_seed(0)
        try:
            for part in parts:
                part.eval()
            of_prior, of_likelihood = (
                f"the prior's {type(prior).__name__}",
                f"the likelihood's {type(likelihood).__name__}",
            )
            z = prior.sample(n)
            _expect(z, [n, k], f"{of_prior}.sample({n})", name, f"one {k}-vector per sample (latent_dim={k})")
            if has_log_prob(prior):
                what, fix = f"{of_prior}.log_prob(z of shape {[n, k]})", "one log-density per latent"
                _expect(prior.log_prob(z), [n], what, name, fix)
            if isinstance(likelihood, SimulatorLikelihood):  # never spend the user's simulation budget
                x = torch.zeros(n, *shape, device=z.device, dtype=z.dtype)
            else:
                x = likelihood.sample(z)
                what = f"{of_likelihood}.sample(z of shape {[n, k]})"
                _expect(x, [n, *shape], what, name, f"an x of data_shape={shape} per z")
            if has_log_prob(likelihood):
                what, fix = f"{of_likelihood}.log_prob(x of shape {[n, *shape]}, z)", "one log-density per x"
                _expect(likelihood.log_prob(x, z), [n], what, name, fix)
            what = f"the encoder {type(encoder).__name__}(x of shape {[n, *shape]})"
            _expect(encoder(x), [n, k], what, name, f"a {k}-vector per example (latent_dim={k})")
        finally:
            for part, mode in zip(parts, modes):
                part.train(mode)


def check_bernoulli_data(algorithm: Any, x: Tensor) -> None:
    """Refuse data outside ``[0, 1]`` for a Bernoulli likelihood (the default ``likelihood_family``)."""
    if not isinstance(algorithm.likelihood, BernoulliLikelihood) or x.numel() == 0:
        return
    low, high = float(x.min()), float(x.max())
    if low < 0.0 or high > 1.0:
        raise ValueError(
            f"{type(algorithm).__name__}'s likelihood is Bernoulli (likelihood_family 'bernoulli', the "
            f"default), which models data in [0, 1], but the data has values in [{low:.3g}, {high:.3g}]: "
            "set likelihood_family='gaussian' (--model.init_args.likelihood_family gaussian)"
        )
