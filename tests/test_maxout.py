"""Maxout layers (``Maxout``, ``MLP(maxout_pieces=k)``) and the maxout joint discriminator."""

import pytest
import torch

import ivi_lightning as ivi
from ivi_lightning.nets import MLP, Discriminator, Maxout


def test_each_output_is_the_largest_of_its_pieces():
    layer = Maxout(2, 2, pieces=3)
    with torch.no_grad():
        # unit 0: max(x1, -x1, 0) = |x1|; unit 1: max(x2, 2 x2, x1 + x2)
        layer.linear.weight.copy_(torch.tensor([[1.0, 0], [-1, 0], [0, 0], [0, 1], [0, 2], [1, 1]]))
        layer.linear.bias.zero_()
    x = torch.tensor([[-3.0, 1.0], [2.0, -1.0]])
    expected = torch.tensor([[3.0, 2.0], [2.0, 1.0]])
    assert torch.equal(layer(x), expected)


def test_maxout_mlp_has_maxout_hidden_layers_and_a_linear_head():
    net = MLP(4, 1, hidden=(8, 6), maxout_pieces=5)
    assert [type(m).__name__ for m in net] == ["Maxout", "Maxout", "Linear"]
    assert [m.linear.out_features for m in list(net)[:2]] == [40, 30] and net[1].linear.in_features == 8
    assert net(torch.zeros(3, 4)).shape == (3, 1)


@pytest.mark.parametrize("pieces", [0, -2, 2.5, True, "5"])
def test_bad_maxout_pieces_name_the_cause_and_the_fix(pieces):
    with pytest.raises(ValueError, match=r"maxout_pieces must be a whole number ≥ 1 \(1: linear layers"):
        Discriminator(2, 2, hidden=(8,), maxout_pieces=pieces)
    with pytest.raises(ValueError, match=r"pieces ≥ 2"):
        Maxout(2, 2, pieces=1)


def test_a_maxout_discriminator_trains_in_jcadv(tmp_path):
    import pytorch_lightning as pl

    from datamodules import Toy2DDataModule

    discriminator = Discriminator(2, 2, hidden=(16, 16), maxout_pieces=3)
    model = ivi.JCAdv(latent_dim=2, data_shape=2, hidden=(16,), loss="ali", aux_steps=1,
                      likelihood=ivi.ImplicitLikelihood(2, 2, 4, (16,)), discriminator=discriminator)
    before = [p.detach().clone() for p in discriminator.parameters()]
    pl.Trainer(max_steps=4, accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
               enable_model_summary=False, default_root_dir=tmp_path).fit(
        model, Toy2DDataModule("grid", num_samples=256, batch_size=64, seed=0)
    )
    assert model.discriminator is discriminator
    assert all(not torch.equal(a, b) for a, b in zip(before, discriminator.parameters()))
