"""Mode coverage of samples from a mixture of Gaussians with known centres: the protocol of
VEEGAN (Srivastava et al. 2017) and PacGAN (Lin et al. 2018) for the 2-D ring and grid."""

from __future__ import annotations

import math
from typing import Dict, Tuple

import torch
from torch import Tensor

#: Samples scored per model in the VEEGAN/PacGAN protocol.
PROTOCOL_SAMPLES = 2500


def mixture_modes(dataset: str) -> Tuple[Tensor, float]:
    """Centres ``[K, 2]`` and the common std of a 2-D mixture of ``Toy2DDataModule``.

    Args:
        dataset: ``"ring"`` (8 modes on a circle of radius 2, std 0.02) or ``"grid"`` (25 modes
            on ``{−4, −2, 0, 2, 4}²``, std 0.05).

    >>> [tuple(mixture_modes(name)[0].shape) for name in ("ring", "grid")]
    [(8, 2), (25, 2)]
    """
    if dataset == "ring":
        angles = 2 * math.pi * torch.arange(8) / 8
        return 2.0 * torch.stack([angles.cos(), angles.sin()], 1), 0.02
    if dataset == "grid":
        axis = torch.arange(-4.0, 5.0, 2.0)
        return torch.cartesian_prod(axis, axis), 0.05
    raise ValueError(f"mixture_modes knows 'ring' and 'grid', got {dataset!r}")


def mode_coverage(samples: Tensor, modes: Tensor, std: float, radius: float = 3.0) -> Dict[str, float]:
    """Modes covered (and well covered), high-quality share and the KL of the mode histogram to the uniform.

    A sample is *high quality* when it lies within ``radius · std`` of its nearest mode; a mode is
    *covered* when at least one high-quality sample is nearest to it, and *well covered* when at
    least a quarter of its fair share ``N / K`` of the ``N`` samples is (a mode kept alive by a
    stray sample or two is covered, not well covered). ``kl_to_uniform`` is
    ``KL[h ‖ U] = Σ_k h_k log(K h_k)`` for ``h`` the histogram of the high-quality samples over the
    ``K`` modes (``0``: every mode equally often; ``log K``: a single mode; ``inf`` without any
    high-quality sample).

    Args:
        samples: ``[N, d]`` model samples.
        modes: ``[K, d]`` mode centres.
        std: the modes' common standard deviation.
        radius: in standard deviations.

    Returns:
        ``modes`` (covered, an int-valued float), ``well_covered`` (likewise), ``high_quality``
        (share in ``[0, 1]``) and ``kl_to_uniform`` (nats).

    >>> modes = torch.tensor([[0.0, 0.0], [10.0, 0.0]])
    >>> mode_coverage(torch.tensor([[0.0, 0.1], [10.0, 0.0], [5.0, 5.0]]), modes, std=0.1)["modes"]
    2.0
    >>> mode_coverage(torch.tensor([[0.0, 0.0]] * 15 + [[10.0, 0.0]]), modes, std=0.1)["well_covered"]
    1.0
    """
    distance, nearest = torch.cdist(samples.float(), modes.float()).min(1)
    good = distance < radius * std
    counts = torch.bincount(nearest[good], minlength=len(modes)).double()
    if counts.sum() == 0:
        kl = math.inf
    else:
        h = counts / counts.sum()
        kl = float(torch.where(h > 0, h * (h * len(modes)).log(), torch.zeros_like(h)).sum())
    return {
        "modes": float((counts > 0).sum()),
        "well_covered": float((counts >= len(samples) / (4 * len(modes))).sum()),
        "high_quality": float(good.float().mean()),
        "kl_to_uniform": kl,
    }
