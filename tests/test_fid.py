"""FID with a stand-in feature extractor (the FID-Inception weights are never downloaded)."""
import pytest
import torch
from torch import nn
from torchmetrics.image.fid import _compute_fid

from ivi_lightning.evaluation import build_fid, feature_statistics, fid_score, frechet_distance
from ivi_lightning.evaluation.fid import INCEPTION_WEIGHTS_FILE


class TinyFeatures(nn.Module):
    """A fixed random projection of 8×8 RGB images to 6 features: an Inception stand-in."""

    num_features = 6

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.AvgPool2d(2), nn.Flatten(), nn.Linear(3 * 4 * 4, 6))

    def forward(self, images):
        return self.net(images)


def test_fid_of_a_set_with_itself_is_zero_and_shifts_cost():
    extractor = TinyFeatures()
    images = torch.rand(200, 3, 8, 8)
    assert abs(fid_score(images, images, feature_extractor=extractor)) < 1e-3
    shifted = (images + 0.2).clamp(0, 1)
    fid = fid_score(images.split(50), shifted.split(50), feature_extractor=extractor)  # batch streams
    with torch.no_grad():
        real, fake = feature_statistics(extractor(images)), feature_statistics(extractor(shifted))
    expected = float(frechet_distance(*real, *fake))
    assert fid > 0.01 and fid == pytest.approx(expected, rel=1e-3)
    bigger = fid_score(images, (images + 0.4).clamp(0, 1), feature_extractor=extractor)
    assert bigger > fid


def test_grey_images_are_repeated_to_three_channels():
    metric = build_fid(feature_extractor=TinyFeatures(), image_shape=(3, 8, 8))
    grey = torch.rand(20, 1, 8, 8)
    metric.update(grey, real=True)
    metric.update(grey.expand(-1, 3, -1, -1), real=False)
    assert abs(float(metric.compute())) < 1e-3


def test_frechet_distance_matches_torchmetrics():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(5, 5, generator=g, dtype=torch.float64), torch.randn(5, 5, generator=g, dtype=torch.float64)
    sigma1, sigma2 = a @ a.T + 0.1 * torch.eye(5), b @ b.T + 0.1 * torch.eye(5)
    mu1, mu2 = torch.randn(5, generator=g), torch.randn(5, generator=g)
    assert float(frechet_distance(mu1, sigma1, mu2, sigma2)) == pytest.approx(float(_compute_fid(mu1.double(), sigma1, mu2.double(), sigma2)), rel=1e-6)
    assert float(frechet_distance(mu1, sigma1, mu1, sigma1)) == pytest.approx(0.0, abs=1e-8)


def test_missing_inception_weights_say_how_to_get_them(tmp_path):
    with pytest.raises(FileNotFoundError, match=INCEPTION_WEIGHTS_FILE):
        build_fid(inception_weights_path=str(tmp_path / INCEPTION_WEIGHTS_FILE))
    with pytest.raises(ValueError, match="exactly one feature extractor"):
        build_fid()
    with pytest.raises(ValueError, match="exactly one feature extractor"):
        build_fid(inception_weights_path="x.pth", feature_extractor=TinyFeatures())
    with pytest.raises(ValueError, match="n >= 2"):
        feature_statistics(torch.zeros(1, 3))
