"""Sampling-importance-resampling by the joint discriminator: ``JCAdv.sample_model_resampled``."""

import math

import pytest
import pytorch_lightning as pl
import torch
from torch import nn

import ivi_lightning as ivi
from datamodules import Toy2DDataModule
from ivi_lightning.estimators import importance_resample
from ivi_lightning.evaluation.modes import mixture_modes, mode_coverage


def test_resampling_normal_proposals_by_a_gaussian_ratio_gives_the_target():
    torch.manual_seed(0)
    x = torch.randn(4_000_000)  # p = N(0, 1); 1,000 proposals per kept one
    mean = 1.5
    log_ratio = mean * x - mean**2 / 2  # log N(x; 1.5, 1) − log N(x; 0, 1)
    kept = importance_resample(log_ratio, 4000)
    assert len(set(kept.tolist())) == 4000  # distinct proposals
    assert x[kept].mean().item() == pytest.approx(mean, abs=0.05)
    assert x[kept].std().item() == pytest.approx(1.0, abs=0.05)


def test_an_overestimated_weight_is_kept_once_not_copied():
    log_weights = torch.zeros(1000)
    log_weights[7] = 50.0  # e.g. a discriminator extrapolating far from its data
    kept = importance_resample(log_weights, 100).tolist()
    assert kept.count(7) == 1 and len(set(kept)) == 100


def test_proposals_of_zero_weight_are_never_kept():
    log_weights = torch.tensor([0.0, -math.inf, 1.0, -math.inf, 3.0])
    for _ in range(20):
        assert set(importance_resample(log_weights, 2).tolist()) <= {0, 2, 4}


@pytest.mark.parametrize("log_weights, num_samples, message", [
    (torch.tensor([0.0, -math.inf]), 2, "asked for 2, of 1 such proposals"),
    (torch.zeros(3), 0, "asked for 0"),
    (torch.tensor([0.0, math.nan]), 1, "got NaN or"),
    (torch.tensor([0.0, math.inf]), 1, r"got NaN or \+inf"),
])
def test_impossible_resampling_is_refused(log_weights, num_samples, message):
    with pytest.raises(ValueError, match=message):
        importance_resample(log_weights, num_samples)


class ShiftedNormalRatio(nn.Module):
    """``T(x, z) = a·z₁ − a²/2``: the log-ratio of ``N(z₁; a, 1)`` to ``N(z₁; 0, 1)``, whatever ``x``."""

    def __init__(self, shift: float) -> None:
        super().__init__()
        self.shift = shift

    def forward(self, x, z):
        return self.shift * z[:, 0] - self.shift**2 / 2


class Double(ivi.Likelihood):
    """``x = 2z``: each sample's ``x`` tells which ``z`` it came from."""

    def sample(self, z):
        return 2 * z


def _model(discriminator=None, **options):
    return ivi.JCAdv(latent_dim=2, data_shape=2, hidden=(8,), loss="ali", likelihood=Double(),
                     discriminator=discriminator, **options)


def test_resampled_model_joints_follow_the_discriminators_ratio_and_stay_joints():
    model = _model(ShiftedNormalRatio(1.0))
    torch.manual_seed(0)
    x, z = model.sample_model_resampled(2000, oversampling_factor=500)
    assert x.shape == z.shape == (2000, 2)
    assert torch.equal(x, 2 * z)  # each kept x with its own z
    assert z[:, 0].mean().item() == pytest.approx(1.0, abs=0.08)  # the prior N(0, I) moved by exp T
    assert z[:, 1].mean().item() == pytest.approx(0.0, abs=0.08)  # where T is flat, nothing moves


def test_an_oversampling_factor_of_one_is_plain_sampling():
    model = _model(ShiftedNormalRatio(1.0))
    torch.manual_seed(3)
    resampled = model.sample_model_resampled(50, oversampling_factor=1)
    torch.manual_seed(3)
    plain = model.sample_model(50)
    assert all(torch.equal(a, b) for a, b in zip(resampled, plain))


class HalfOnTheRing(ivi.Likelihood):
    """A fixed simulator: for ``z₁ > 0`` a point of the ring data's mixture, else one spread over ``[−3, 3]²``."""

    def sample(self, z):
        angle = 2 * math.pi / 8 * torch.randint(8, (len(z),), device=z.device)
        ring = 2 * torch.stack([angle.cos(), angle.sin()], 1) + 0.02 * torch.randn_like(z)
        return torch.where(z[:, :1] > 0, ring, 6 * torch.rand_like(z) - 3)


def _discriminator_trained_on_the_ring(likelihood: ivi.Likelihood, tmp_path) -> ivi.JCAdv:
    """JCAdv with ``likelihood`` as its fixed model, its discriminator (and encoder) trained
    against the ring data for 3,000 optimizer steps."""
    pl.seed_everything(0, verbose=False)
    data = Toy2DDataModule("ring", num_samples=2048, batch_size=128, seed=0)
    model = ivi.JCAdv(latent_dim=2, data_shape=2, hidden=(64, 64), aux_steps=1, loss="ali", learn_model=False,
                      prior=ivi.StandardNormalPrior(2), likelihood=likelihood)
    pl.Trainer(max_steps=3000, accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False,
               enable_checkpointing=False, limit_val_batches=0, default_root_dir=tmp_path).fit(model, data)
    return model


def test_the_discriminator_trained_by_jc_adv_resamples_the_model_towards_the_data(tmp_path):
    # Half of the fixed model's samples lie on the ring's modes, half are spread around them; JCAdv
    # trains its discriminator (and encoder) against the ring data, and the resampled model samples
    # then lie mostly on the modes: the weights exp T point from the model to the data.
    model = _discriminator_trained_on_the_ring(HalfOnTheRing(), tmp_path)
    modes, std = mixture_modes("ring")
    on_the_modes = lambda x: mode_coverage(x, modes, std)["high_quality"]
    torch.manual_seed(0)
    plain, resampled = on_the_modes(model.sample_model(4000)[0]), on_the_modes(model.sample_model_resampled(4000)[0])
    assert plain < 0.55 and resampled > 0.75


class UnevenRing(ivi.Likelihood):
    """A fixed generator of the ring's 8 modes that draws the last two only 1% of the time each."""

    def sample(self, z):
        share = torch.tensor([0.98 / 6] * 6 + [0.01, 0.01], device=z.device)
        angle = 2 * math.pi / 8 * torch.multinomial(share, len(z), replacement=True)
        return 2 * torch.stack([angle.cos(), angle.sin()], 1) + 0.02 * torch.randn_like(z)


def test_resampling_gives_modes_the_generator_undersamples_their_share(tmp_path):
    # The generator holds all 8 modes but two of them only by a few samples in 2,500; the
    # discriminator's weights exp T ≈ 12 there give them their fair share back, so every mode is
    # well covered (at least a quarter of its fair share of the samples).
    model = _discriminator_trained_on_the_ring(UnevenRing(), tmp_path)
    modes, std = mixture_modes("ring")
    torch.manual_seed(0)
    plain = mode_coverage(model.sample_model(2500)[0], modes, std)
    resampled = mode_coverage(model.sample_model_resampled(2500)[0], modes, std)
    assert plain["modes"] == 8 and plain["well_covered"] == 6
    assert resampled["well_covered"] == 8 and resampled["kl_to_uniform"] < plain["kl_to_uniform"] / 4


@pytest.mark.parametrize("factor", [0, -4, 2.5, True, "32"])
def test_bad_oversampling_factors_are_refused(factor):
    with pytest.raises(ValueError, match=r"oversampling_factor is the number of model samples drawn per sample kept"):
        _model().sample_model_resampled(10, factor)


def test_a_packed_discriminator_cannot_weigh_single_joints():
    with pytest.raises(ValueError, match="packs 4 joints into one: use a model trained with packing=1"):
        _model(packing=4).sample_model_resampled(8, 4)
