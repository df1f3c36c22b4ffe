"""R1's gradient penalty on the joint discriminator: JCAdv(r1_penalty=γ)."""

from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from torch import nn

import ivi_lightning as ivi
from datamodules import Toy2DDataModule
from ivi_lightning.estimators import joint_gradient_penalty


class LinearJoint(nn.Module):
    """``T(x, z) = w_x·x + w_z·z + b``: its input gradient is ``(w_x, w_z)`` everywhere."""

    def __init__(self, x_dim: int = 2, z_dim: int = 2) -> None:
        super().__init__()
        self.x, self.z = nn.Linear(x_dim, 1), nn.Linear(z_dim, 1, bias=False)

    def forward(self, x, z):
        return (self.x(x) + self.z(z)).squeeze(-1)


def test_joint_gradient_penalty_is_the_mean_squared_input_gradient():
    a, b = 0.7, -1.3
    x, z = torch.randn(16, 3), torch.randn(16, 2)
    quadratic = lambda x, z: a * x.pow(2).sum(1) + b * z.pow(2).sum(1)  # ∇ = (2a x, 2b z)
    expected = (4 * a**2 * x.pow(2).sum(1) + 4 * b**2 * z.pow(2).sum(1)).mean()
    assert torch.allclose(joint_gradient_penalty(quadratic, x, z), expected)


def test_joint_gradient_penalty_trains_the_discriminators_weights_towards_flat():
    net = LinearJoint()
    penalty = joint_gradient_penalty(net, torch.randn(8, 2), torch.randn(8, 2))
    penalty.backward()  # ‖w‖² → gradient 2w, and none for the bias
    assert torch.allclose(net.x.weight.grad, 2 * net.x.weight.detach())
    assert torch.allclose(net.z.weight.grad, 2 * net.z.weight.detach())
    assert net.x.bias.grad is None  # a constant shift of T is not penalised


@pytest.mark.parametrize("gamma", [0.0, 0.1, 4.0])
def test_jc_adv_adds_half_gamma_times_the_penalty_at_the_encoder_joints(gamma):
    model = ivi.JCAdv(latent_dim=2, data_shape=2, loss="ali", likelihood_family="gaussian",
                      discriminator=LinearJoint(), r1_penalty=gamma)
    w = torch.cat([model.discriminator.x.weight, model.discriminator.z.weight], 1).detach()
    penalty = model.discriminator_penalty(torch.randn(8, 2), torch.randn(8, 2))
    assert torch.allclose(penalty, 0.5 * gamma * w.pow(2).sum())


def test_the_penalty_reaches_through_a_packed_discriminator():
    model = ivi.JCAdv(latent_dim=2, data_shape=2, hidden=(8,), loss="ali", likelihood_family="gaussian",
                      packing=2, r1_penalty=1.0)
    penalty = model.discriminator_penalty(torch.randn(8, 2), torch.randn(8, 2))
    assert penalty.ndim == 0 and penalty > 0
    penalty.backward()
    assert all(p.grad is not None for p in model.discriminator.parameters() if p.ndim > 1)


def _discriminator_flatness(r1_penalty: float, tmp_path) -> float:
    """``E‖∇_{x,z} T‖²`` at the data's encoder joints after 300 optimizer steps of ALI on the ring."""
    pl.seed_everything(0, verbose=False)
    data = Toy2DDataModule("ring", num_samples=1024, batch_size=128, seed=0)
    generator = ivi.ImplicitLikelihood(2, 2, 2, (32,), act="relu")
    model = ivi.JCAdv(latent_dim=2, data_shape=2, hidden=(32, 32), aux_steps=1, loss="ali", likelihood=generator,
                      r1_penalty=r1_penalty)
    pl.Trainer(max_steps=300, accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False,
               enable_checkpointing=False, limit_val_batches=0, default_root_dir=tmp_path).fit(model, data)
    x = model.batch_data(next(iter(data.train_dataloader())))
    with torch.no_grad():
        z = model.encoder(x)
    return joint_gradient_penalty(model.discriminator, x, z).item()


def test_training_with_the_penalty_flattens_the_discriminator_at_the_data(tmp_path):
    assert _discriminator_flatness(10.0, tmp_path) < 0.2 * _discriminator_flatness(0.0, tmp_path)


@pytest.mark.parametrize("gamma", [-0.1, float("inf"), float("nan"), True, "0.1"])
def test_bad_r1_penalty_is_refused(gamma):
    with pytest.raises(ValueError, match=r"r1_penalty is a weight, ≥ 0 \(0: none; e.g. 0.1\), got"):
        ivi.JCAdv(latent_dim=2, data_shape=2, loss="ali", likelihood_family="gaussian", r1_penalty=gamma)


def test_the_cli_refuses_a_negative_r1_penalty_before_writing_anything(tmp_path, capsys):
    from ivi_lightning.cli import main

    config = str(Path(__file__).parents[1] / "configs/jc_adv/ring_ali.yaml")
    root = tmp_path / "run"
    with pytest.raises(SystemExit) as exit:
        main(["fit", "--config", config, "--model.init_args.r1_penalty", "-1", "--trainer.default_root_dir", str(root)])
    assert exit.value.code == 2
    assert "ivi: error: r1_penalty is a weight" in capsys.readouterr().err
    assert not root.exists()
