"""PacGAN's packing of the joint discriminator (``JCAdv(packing=m)``)."""

import pytest
import pytorch_lightning as pl
import torch

import ivi_lightning as ivi
from datamodules import Toy2DDataModule
from ivi_lightning.algorithms.joint_discriminator import PackedDiscriminator, pack_joints, packed_shape
from ivi_lightning.estimators import ratio_accuracy, ratio_loss
from ivi_lightning.evaluation.modes import mixture_modes
from ivi_lightning.nets.mlp import Discriminator


def test_pack_joints_groups_consecutive_joints():
    x, z = torch.arange(12.0).view(6, 2), -torch.arange(6.0).view(6, 1)
    x_packed, z_packed = pack_joints(x, z, 3)
    assert x_packed.shape == (2, 6) and z_packed.shape == (2, 3)
    assert torch.equal(x_packed[1], torch.cat([x[3], x[4], x[5]]))
    assert torch.equal(z_packed[0], z[:3, 0])
    images, _ = pack_joints(torch.zeros(8, 1, 5, 5), torch.zeros(8, 2), 4)
    assert images.shape == (2, 4, 5, 5) and packed_shape((1, 5, 5), 4) == (4, 5, 5)


def test_packed_discriminator_gives_one_logit_per_pack():
    inner = Discriminator(packed_shape((2,), 4), 4 * 3, hidden=(8,))
    assert PackedDiscriminator(inner, 4)(torch.randn(12, 2), torch.randn(12, 3)).shape == (3,)


def test_packing_one_is_the_plain_discriminator():
    inner = Discriminator(2, 1, hidden=(8,))
    x, z = torch.randn(5, 2), torch.randn(5, 1)
    assert torch.equal(PackedDiscriminator(inner, 1)(x, z), inner(x, z))
    likelihood = ivi.ImplicitLikelihood(2, 2, 2, (8,))
    models = []
    for options in ({}, {"packing": 1}):
        torch.manual_seed(0)
        models.append(
            ivi.JCAdv(latent_dim=2, data_shape=2, hidden=(8,), loss="ali", likelihood=likelihood, **options)
        )
    plain, packed = models
    assert type(packed.discriminator) is type(plain.discriminator)
    for (name, a), (_, b) in zip(plain.state_dict().items(), packed.state_dict().items()):
        assert torch.equal(a, b), name


@pytest.mark.parametrize("packing", [0, -2, 2.5, True, "4"])
def test_bad_packing_names_cause_and_fix(packing):
    with pytest.raises(ValueError, match=r"packing is the number of joints .* use 1 for the plain"):
        ivi.JCAdvRMD(latent_dim=2, data_shape=2, hidden=(8,), packing=packing)


def test_batch_not_a_multiple_of_packing_names_the_fix():
    model = ivi.JCAdvRMD(latent_dim=2, data_shape=2, hidden=(8,), packing=4)
    with pytest.raises(ValueError, match="got 6 joints, not a multiple of 4: make the batch size"):
        model.discriminator(torch.zeros(6, 2), torch.zeros(6, 2))


@pytest.mark.parametrize("cls, options", [(ivi.JCAdv, {"loss": "ali"}), (ivi.JCAdvRMD, {"unroll_steps": 2})])
def test_packed_training_updates_model_and_discriminator(cls, options):
    data = Toy2DDataModule("ring", num_samples=256, batch_size=32)
    likelihood = {"likelihood": ivi.ImplicitLikelihood(2, 2, 2, (8,))} if cls is ivi.JCAdv else {}
    model = cls(latent_dim=2, data_shape=2, hidden=(8,), noise_dim=2, packing=4, **likelihood, **options)
    assert model.discriminator.discriminator.net[0].in_features == 4 * (2 + 2)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    pl.Trainer(
        fast_dev_run=True,
        accelerator="cpu",
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    ).fit(model, data)
    changed = {k.split(".")[0] for k, v in model.state_dict().items() if not torch.equal(v, before[k])}
    assert {"likelihood", "discriminator", "encoder"} <= changed


def _skewed_ring(n: int, generator: torch.Generator, weights: torch.Tensor) -> torch.Tensor:
    modes, std = mixture_modes("ring")
    return modes[torch.multinomial(weights, n, True, generator=generator)] + std * torch.randn(
        n, 2, generator=generator
    )


def _held_out_accuracy(packing: int) -> float:
    """Accuracy of a discriminator trained to tell the ring from a copy with uneven modes (a third of the
    mass on two modes), its joints packed by ``packing``."""
    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(0)
    uniform, skewed = torch.full((8,), 1 / 8), torch.tensor([2.0, 2.0, 1, 1, 1, 1, 1, 1]) / 10
    inner = Discriminator(packed_shape((2,), packing), packing, hidden=(64, 64))
    disc = PackedDiscriminator(inner, packing)
    optimizer = torch.optim.Adam(disc.parameters(), lr=3e-3)
    z = torch.zeros(512, 1)  # the latent plays no part here
    for _ in range(300):
        data, model = _skewed_ring(512, generator, uniform), _skewed_ring(512, generator, skewed)
        loss = ratio_loss(disc(data, z), disc(model, z))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        z = torch.zeros(8192, 1)
        return float(
            ratio_accuracy(
                disc(_skewed_ring(8192, generator, uniform), z),
                disc(_skewed_ring(8192, generator, skewed), z),
            )
        )


def test_packing_tells_uneven_modes_apart_better():
    """PacGAN's point: a generator that over-weights some modes is easier to spot from 4 samples at once
    than from one (the best accuracies are 0.575 and 0.632 here)."""
    plain, packed = _held_out_accuracy(1), _held_out_accuracy(4)
    assert plain < 0.6 and packed > plain + 0.03, (plain, packed)
