"""The VEEGAN/PacGAN mode-coverage protocol on the 2-D mixtures."""

import math

import pytest
import torch

from ivi_lightning.evaluation.modes import mixture_modes, mode_coverage


def test_modes_match_the_data_module():
    from datamodules import Toy2DDataModule

    for name, count in (("ring", 8), ("grid", 25)):
        modes, std = mixture_modes(name)
        data = Toy2DDataModule(name).generate(2000, torch.Generator().manual_seed(0))
        assert len(modes) == count
        assert mode_coverage(data, modes, std)["high_quality"] == pytest.approx(
            1 - math.exp(-4.5), abs=0.01
        )  # 3 std holds 98.9% of a 2-D Gaussian
        assert mode_coverage(data, modes, std)["modes"] == count
    with pytest.raises(ValueError, match="'ring' and 'grid'"):
        mixture_modes("moons")


def test_coverage_quality_and_kl():
    modes, std = mixture_modes("ring")
    on_two = torch.cat([modes[:1].repeat(30, 1), modes[1:2].repeat(10, 1), torch.zeros(10, 2)])
    scores = mode_coverage(on_two, modes, std)
    assert scores["modes"] == 2 and scores["high_quality"] == pytest.approx(0.8)
    h = torch.tensor([0.75, 0.25])
    assert scores["kl_to_uniform"] == pytest.approx(float((h * (8 * h).log()).sum()), rel=1e-6)
    uniform = mode_coverage(modes.repeat(3, 1), modes, std)
    assert uniform["kl_to_uniform"] == pytest.approx(0.0, abs=1e-9)
    assert mode_coverage(modes[:1], modes, std)["kl_to_uniform"] == pytest.approx(math.log(8))
    assert mode_coverage(torch.zeros(4, 2), modes, std)["kl_to_uniform"] == math.inf
    # Just outside 3 std is not high quality; just inside is.
    assert mode_coverage(modes[:1] + torch.tensor([[3.01 * std, 0.0]]), modes, std)["modes"] == 0
    assert mode_coverage(modes[:1] + torch.tensor([[2.99 * std, 0.0]]), modes, std)["modes"] == 1


def test_a_mode_kept_by_a_stray_sample_is_covered_but_not_well_covered():
    modes, std = mixture_modes("grid")
    # 2,500 samples: 24 modes at their fair share of 100 less a few, one mode with 2 and one with 25
    counts = [2, 25] + [2473 // 23] * 22 + [2473 - 22 * (2473 // 23)]
    samples = torch.cat([mode.repeat(n, 1) for mode, n in zip(modes, counts)])
    assert len(samples) == 2500
    scores = mode_coverage(samples, modes, std)
    assert scores["modes"] == 25 and scores["well_covered"] == 24  # 25 = 2500 / (4 · 25) is enough
