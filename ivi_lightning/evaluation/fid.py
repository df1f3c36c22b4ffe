"""Fréchet Inception Distance (FID) between data and model samples, offline.

FID is the Fréchet distance between Gaussians fitted to features of real and generated images:
``‖μ_r − μ_g‖² + tr(Σ_r + Σ_g − 2 (Σ_r^{½} Σ_g Σ_r^{½})^{½})``. Published numbers use the
FID-Inception network; this module never downloads it. Either pass
``inception_weights_path`` (torchmetrics' default extractor, which needs the ``torch-fidelity``
package and its weights file :data:`INCEPTION_WEIGHTS_FILE`) or any ``feature_extractor``
``nn.Module`` mapping images to ``[batch, features]`` (numbers from other extractors are not
comparable with published FIDs).
"""

from __future__ import annotations

import os
from typing import Any, Iterable, Optional, Tuple

import torch
from torch import Tensor, nn

INCEPTION_WEIGHTS_FILE = "weights-inception-2015-12-05-6726825d.pth"
INCEPTION_WEIGHTS_URL = (
    f"https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/{INCEPTION_WEIGHTS_FILE}"
)


def _sqrtm_psd(matrix: Tensor) -> Tensor:
    """Square root of a symmetric positive semi-definite matrix by eigendecomposition."""
    values, vectors = torch.linalg.eigh(0.5 * (matrix + matrix.T))
    return (vectors * values.clamp_min(0).sqrt()) @ vectors.T


def frechet_distance(mu1: Tensor, sigma1: Tensor, mu2: Tensor, sigma2: Tensor) -> Tensor:
    """Fréchet (2-Wasserstein²) distance between ``N(mu1, sigma1)`` and ``N(mu2, sigma2)``, in float64.

    Uses symmetric eigendecompositions only (no scipy): ``tr((Σ₁^{½} Σ₂ Σ₁^{½})^{½})``.

    Args:
        mu1: mean ``[features]``.
        sigma1: covariance ``[features, features]``.
        mu2: mean ``[features]``.
        sigma2: covariance ``[features, features]``.

    >>> eye = torch.eye(3)
    >>> round(float(frechet_distance(torch.zeros(3), eye, torch.ones(3), 4 * eye)), 6)  # 3 + 3·(2 − 1)²
    6.0
    """
    mu1, mu2, sigma1, sigma2 = (t.double() for t in (mu1, mu2, sigma1, sigma2))
    root1 = _sqrtm_psd(sigma1)
    cross = torch.linalg.eigvalsh(root1 @ sigma2 @ root1).clamp_min(0).sqrt().sum()
    return (mu1 - mu2).pow(2).sum() + sigma1.trace() + sigma2.trace() - 2 * cross


def feature_statistics(features: Tensor) -> Tuple[Tensor, Tensor]:
    """Mean and (unbiased) covariance of ``features [n, d]``, ``n ≥ 2``, in float64."""
    if features.dim() != 2 or features.shape[0] < 2:
        raise ValueError(f"need features [n >= 2, d] to fit a Gaussian, got shape {tuple(features.shape)}")
    features = features.double()
    return features.mean(0), torch.cov(features.T).reshape(features.shape[1], features.shape[1])


class _ThreeChannels(nn.Module):
    """Repeats grey-scale images to three channels before the wrapped extractor."""

    def __init__(self, extractor: nn.Module) -> None:
        super().__init__()
        self.extractor = extractor
        if hasattr(extractor, "num_features"):
            self.num_features = extractor.num_features

    def forward(self, images: Tensor) -> Tensor:
        return self.extractor(images.expand(-1, 3, *images.shape[2:]) if images.shape[1] == 1 else images)


def build_fid(
    inception_weights_path: Optional[str] = None,
    feature_extractor: Optional[nn.Module] = None,
    image_shape: Tuple[int, int, int] = (3, 299, 299),
    reset_real_features: bool = True,
):
    """A torchmetrics ``FrechetInceptionDistance`` that works offline.

    Feed it float images in ``[0, 1]`` with ``update(images, real=True/False)``; grey-scale
    images are repeated to three channels.

    Args:
        inception_weights_path: path of the FID-Inception weights :data:`INCEPTION_WEIGHTS_FILE`
            (download it once from :data:`INCEPTION_WEIGHTS_URL`); needs ``pip install torch-fidelity``.
        feature_extractor: instead, any module mapping images ``[batch, C, H, W]`` to features
            ``[batch, d]`` (give it a ``num_features`` attribute, or its output size is found by
            running it once on a random ``image_shape`` input).
        image_shape: input shape used to probe ``feature_extractor``'s output size.
        reset_real_features: whether ``reset()`` also forgets the real images' statistics.

    Returns:
        ``torchmetrics.image.fid.FrechetInceptionDistance``.
    """
    from torchmetrics.image.fid import FrechetInceptionDistance

    if (inception_weights_path is None) == (feature_extractor is None):
        raise ValueError(
            "FID needs exactly one feature extractor: inception_weights_path=<path to "
            f"{INCEPTION_WEIGHTS_FILE}> (download from {INCEPTION_WEIGHTS_URL}) for published-comparable "
            "numbers, "
            "or feature_extractor=<nn.Module> for your own features"
        )
    if feature_extractor is not None:
        return FrechetInceptionDistance(
            feature=_ThreeChannels(feature_extractor).eval(),
            normalize=True,
            reset_real_features=reset_real_features,
            input_img_size=tuple(image_shape),  # type: ignore[arg-type]
        )
    path = os.path.expanduser(str(inception_weights_path))
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"FID-Inception weights not found at {path!r}. This library never downloads them: fetch "
            f"{INCEPTION_WEIGHTS_URL} once (on a machine with internet access) and pass its local path as "
            "inception_weights_path, or pass feature_extractor=<nn.Module> to use your own features"
        )
    try:
        import torch_fidelity  # noqa: F401
    except ImportError:
        raise ImportError(
            "the FID-Inception network comes from the torch-fidelity package: `pip install torch-fidelity` "
            "(or pass feature_extractor=<nn.Module> to use your own features)"
        ) from None
    metric = FrechetInceptionDistance(
        feature=2048,
        normalize=True,
        reset_real_features=reset_real_features,
        feature_extractor_weights_path=path,
    )
    metric.inception = _ThreeChannels(metric.inception)
    return metric


@torch.no_grad()
def fid_score(
    real: Iterable[Tensor],
    fake: Iterable[Tensor],
    inception_weights_path: Optional[str] = None,
    feature_extractor: Optional[nn.Module] = None,
    device: Optional[torch.device] = None,
) -> float:
    """FID between two streams of image batches (float, ``[0, 1]``, ``[batch, C, H, W]``).

    Args:
        real: batches of data images (a tensor counts as one batch).
        fake: batches of model samples.
        inception_weights_path: see :func:`build_fid`.
        feature_extractor: see :func:`build_fid`.
        device: where to run the extractor (default: the first real batch's device).

    >>> extractor = nn.Sequential(nn.Flatten(), nn.Linear(12, 4))
    >>> images = torch.rand(64, 3, 2, 2)
    >>> abs(fid_score(images, images, feature_extractor=extractor)) < 1e-3
    True
    """
    real_batches = [real] if isinstance(real, Tensor) else real
    fake_batches = [fake] if isinstance(fake, Tensor) else fake
    metric = None
    for is_real, batches in ((True, real_batches), (False, fake_batches)):
        for images in batches:
            images = images[0] if isinstance(images, (tuple, list)) else images
            if metric is None:
                shape: Any = tuple(images.shape[1:])
                metric = build_fid(inception_weights_path, feature_extractor, image_shape=shape)
                metric = metric.to(device if device is not None else images.device)
            metric.update(images.to(metric.device, torch.float32), real=is_real)
    if metric is None:
        raise ValueError("fid_score got no images")
    return float(metric.compute())
