"""Your own prior and simulator: likelihood-free amortised inference with JCAdv.

The simulator is a :class:`~ivi_lightning.Likelihood` with only ``sample`` (no density), so
PCAdv/PCDen would refuse it; JCAdv compares joints and needs no density of the model. With
``learn_model=False`` the prior and simulator stay fixed and only ``q(z|x)`` is trained, on
data simulated from the model itself (the prior predictive), so ``q`` approximates the
posterior for any observation the model can produce.

    python examples/custom_simulator.py                                  # a few minutes on CPU
    python examples/custom_simulator.py --max_steps 20 --num_sims 512    # a smoke run in seconds
"""
import argparse

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, TensorDataset

from ivi_lightning import JCAdv, Likelihood, Prior


class UniformPrior(Prior):
    """``z`` uniform on ``[-2, 2]²``. Only ``sample``: JCAdv needs no density of the prior either."""

    def sample(self, num_samples):
        return 4 * torch.rand(num_samples, self.dim, device=self._anchor.device) - 2


class ProductSimulator(Likelihood):
    """``x = (z₁ + z₂, z₁ · z₂) + noise``: the sign of ``z`` is not identified, so posteriors are two-lobed."""

    data_shape = (2,)

    def sample(self, z):
        x = torch.stack([z[:, 0] + z[:, 1], z[:, 0] * z[:, 1]], 1)
        return x + 0.1 * torch.randn_like(x)


class SimulatedData(pl.LightningDataModule):
    """``num_sims`` draws of ``x`` from the prior predictive, simulated once."""

    def __init__(self, prior, simulator, num_sims=20000, batch_size=256):
        super().__init__()
        with torch.no_grad():
            self.x = simulator.sample(prior.sample(num_sims))
        self.batch_size, self.data_shape = batch_size, simulator.data_shape

    def train_dataloader(self):
        return DataLoader(TensorDataset(self.x), batch_size=self.batch_size, shuffle=True, drop_last=True)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--max_steps", type=int, default=8000, help="optimizer steps (4 per update: aux_steps=3)")
    parser.add_argument("--num_sims", type=int, default=20000, help="simulations in the training set")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    pl.seed_everything(args.seed)
    prior, simulator = UniformPrior(2), ProductSimulator()
    dm = SimulatedData(prior, simulator, num_sims=args.num_sims)
    model = JCAdv(latent_dim=2, data_shape=dm.data_shape, prior=prior, likelihood=simulator, learn_model=False, hidden=(128, 128))
    trainer = pl.Trainer(max_steps=args.max_steps, accelerator="cpu", logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(model, dm)

    z_true = torch.tensor([[1.0, -0.5]])
    x_obs = torch.tensor([[0.5, -0.5]])  # the noise-free simulation of z_true; (-0.5, 1.0) explains it as well
    with torch.no_grad():
        z = model.sample_posterior(x_obs, num_samples=4000)[:, 0]  # [4000, 2]
        x_rep = simulator.sample(z)
    error = (x_rep - x_obs).pow(2).sum(1).sqrt().mean().item()
    print(f"posterior mean {z.mean(0).tolist()}, std {z.std(0).tolist()} (true z {z_true[0].tolist()} or its swap)")
    print(f"mean distance of re-simulated x to the observation = {error:.4f}")
    return error


if __name__ == "__main__":
    main()
