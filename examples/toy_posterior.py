"""A toy posterior in Python: PCAdv (AVB) on the explaining-away problem.

The model (prior and likelihood) is known, so only the implicit encoder ``q(z|x)`` is trained;
the two-lobed exact posterior is computable on a grid, so the script prints the Jensen–Shannon
divergence of ``q`` to it at four observations and saves a plot of ``q``'s samples.

    python examples/toy_posterior.py                                # the shipped budget, ~1-2 min on CPU
    python examples/toy_posterior.py --max_steps 20 --samples 2000  # a smoke run in seconds
"""
import argparse

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pytorch_lightning as pl

from datamodules import Toy2DDataModule
from ivi_lightning import PCAdv
from ivi_lightning.evaluation import posterior_js


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--max_steps", type=int, default=8000, help="optimizer steps (4 per update: aux_steps=3)")
    parser.add_argument("--samples", type=int, default=50000, help="posterior samples per observation for the JS")
    parser.add_argument("--out", default="toy_posterior.png", help="where to save the plot")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    pl.seed_everything(args.seed)
    dm = Toy2DDataModule(dataset="explaining_away")
    model = PCAdv(latent_dim=2, data_shape=dm.data_shape, prior=dm.prior, likelihood=dm.likelihood, learn_model=False)
    trainer = pl.Trainer(max_steps=args.max_steps, accelerator="cpu", logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(model, dm)

    x = dm.evaluation_points  # [4, 1]: x = 0.01, 0.05, 0.2, 1
    extent = dm.latent_extent  # the square holding nearly all posterior mass: [-6, 6]² here
    js = posterior_js(model.sample_posterior, dm.prior, dm.likelihood, x, num_samples=args.samples, extent=extent)
    for xi, d in zip(x[:, 0].tolist(), js.tolist()):
        print(f"x = {xi:<5.2g} JS(q, exact posterior) = {d:.4f} nats")
    print(f"mean JS = {js.mean().item():.4f} nats")

    z = model.sample_posterior(x, num_samples=2000).detach()  # [2000, 4, 2]
    fig, axes = plt.subplots(1, len(x), figsize=(3 * len(x), 3), sharex=True, sharey=True)
    for i, ax in enumerate(axes):
        ax.scatter(z[:, i, 0], z[:, i, 1], s=1, alpha=0.3)
        ax.set(xlim=(-extent, extent), ylim=(-extent, extent), title=f"q(z | x={x[i, 0].item():.2g})")
    fig.tight_layout()
    fig.savefig(args.out)
    print(f"saved {args.out}")
    return js


if __name__ == "__main__":
    main()
