"""sbibm side by side: our likelihood-free algorithms against sbi's NPE, scored by C2ST.

For every task, simulation budget and method: one amortised training on ``budget`` simulated
pairs (the same pairs for every method, from ``--seed``), then posterior samples at each
observation, scored against sbibm's reference posterior samples with sbibm's own ``c2st``
(so the numbers compare with sbibm's published table). Prints a markdown table (C2ST mean ±
standard error over observations, per observation, share of samples outside the prior's
support, simulations used, training seconds) and writes a PNG grid of two_moons samples.

Methods: ``NPE`` (sbi's ``NPE`` with its defaults), ``NPE-NSF`` (sbibm's setting, a neural spline
flow) and ours, each with the settings of ``configs/<algorithm>/sbi_two_moons.yaml``
(see ``OURS`` below); ours train for ``--seconds`` of wall time each.

Install (sbibm pins an old sbi; its reference posteriors ship inside the package)::

    pip install -e '.[sbi]'          # sbi, and sbibm with --no-deps is done by hand:
    pip install sbibm==1.1.0 --no-deps && pip install pandas pyro-ppl future autograd

Run (this CPU: one thread per training)::

    OMP_NUM_THREADS=1 python benchmarks/sbi_benchmark.py --tasks two_moons gaussian_linear slcp \\
        --budgets 10000 --observations 1 2 3 4 5 --seconds 180 --out benchmarks/out/sbi
"""
from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
import time
import warnings
from typing import Callable, Dict, List

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import pytorch_lightning as pl
import torch

import ivi_lightning as ivi
from datamodules import SimulatorDataModule

warnings.filterwarnings("ignore")
logging.getLogger("pytorch_lightning").setLevel(logging.ERROR)

# Our methods: algorithm and settings (as in configs/<algorithm>/sbi_two_moons.yaml).
OURS: Dict[str, tuple] = {
    "JCDen": ("JCDen", dict(noise_std=0.02, max_noise_std=1.0, model_score="denoiser")),
    "JCAdv": ("JCAdv", dict(loss="kl")),
    "JCAdv(forward_kl)": ("JCAdv", dict(loss="forward_kl")),
    "JCAdv(ali)": ("JCAdv", dict(loss="ali")),
}


def load_task(name: str):
    import sbibm

    return sbibm.get_task(name)


def train_npe(prior, theta: torch.Tensor, x: torch.Tensor, estimator: str) -> Callable:
    from sbi.inference import NPE

    inference = NPE(prior=prior, density_estimator=estimator, show_progress_bars=False)
    inference.append_simulations(theta, x).train()
    posterior = inference.build_posterior()
    return lambda x_o, n: posterior.sample((n,), x=x_o.unsqueeze(0), show_progress_bars=False)


def train_ours(method: str, prior, simulator, budget: int, seed: int, seconds: float) -> Callable:
    algorithm, options = OURS[method]
    pl.seed_everything(seed, verbose=False)
    data = SimulatorDataModule(prior, simulator, num_simulations=budget, batch_size=256, seed=seed)
    model = getattr(ivi, algorithm)(latent_dim=data.latent_dim, data_shape=data.data_shape, learn_model=False, **options)
    trainer = pl.Trainer(max_time={"seconds": seconds}, max_epochs=-1, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0)
    trainer.fit(model, data)
    model.eval()

    def sample(x_o: torch.Tensor, n: int) -> torch.Tensor:
        with torch.no_grad():
            return model.sample_posterior(x_o, n)

    sample.simulations = data.simulation_count
    return sample


def outside_support(prior, samples: torch.Tensor) -> float:
    support = prior.support
    return 1.0 - support.check(samples).float().mean().item()


def run(args) -> List[dict]:
    from sbibm.metrics import c2st

    rows = []
    for task_name in args.tasks:
        task = load_task(task_name)
        prior, simulator = task.get_prior_dist(), task.get_simulator()
        for budget in args.budgets:
            torch.manual_seed(args.seed)
            theta = prior.sample((budget,))
            x = simulator(theta)
            for method in args.methods:
                start = time.time()
                if method.startswith("NPE"):
                    sample = train_npe(prior, theta, x, "nsf" if method == "NPE-NSF" else "maf")
                    used = budget
                else:
                    sample = train_ours(method, prior, simulator, budget, args.seed, args.seconds)
                    used = sample.simulations
                seconds = time.time() - start
                scores, outside, draws = [], [], {}
                for obs in args.observations:
                    x_o = task.get_observation(obs)[0]
                    reference = task.get_reference_posterior_samples(obs)[: args.num_samples]
                    samples = sample(x_o, args.num_samples)
                    outside.append(outside_support(prior, samples))
                    scores.append(float(c2st(reference, samples)))
                    if task_name == "two_moons" and obs == args.observations[0]:
                        draws = samples
                mean = sum(scores) / len(scores)
                se = (sum((s - mean) ** 2 for s in scores) / max(1, len(scores) - 1) / len(scores)) ** 0.5
                row = dict(task=task_name, method=method, budget=budget, c2st=scores, mean=mean, se=se,
                           outside=max(outside), simulations=used, seconds=seconds)
                rows.append(row)
                print(json.dumps(row), flush=True)
                if len(draws):
                    torch.save(draws, os.path.join(args.out, f"two_moons_{method}_{budget}.pt"))
    return rows


def table(rows: List[dict]) -> str:
    lines = ["| task | method | budget | C2ST mean ± s.e. | per observation | outside support | simulations | training s |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        per = " / ".join(f"{s:.3f}" for s in r["c2st"])
        lines.append(f"| {r['task']} | {r['method']} | {r['budget']:,} | {r['mean']:.3f} ± {r['se']:.3f} | {per} | "
                     f"{100 * r['outside']:.1f} % | {r['simulations']:,} | {r['seconds']:.0f} |")
    return "\n".join(lines)


def plot_two_moons(out: str, rows: List[dict], observation: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    task = load_task("two_moons")
    panels = [("reference", task.get_reference_posterior_samples(observation)[:2000])]
    for r in rows:
        path = os.path.join(out, f"two_moons_{r['method']}_{r['budget']}.pt")
        if r["task"] == "two_moons" and os.path.exists(path):
            panels.append((f"{r['method']} ({r['budget']:,}): {r['mean']:.2f}", torch.load(path)))
    fig, axes = plt.subplots(1, len(panels), figsize=(3 * len(panels), 3), squeeze=False)
    for ax, (title, samples) in zip(axes[0], panels):
        ax.scatter(samples[:, 0], samples[:, 1], s=1, alpha=0.3)
        ax.set_title(title, fontsize=8)
        ax.set_xlim(-1, 1)
        ax.set_ylim(-1, 1)
        ax.set_aspect("equal")
    fig.tight_layout()
    fig.savefig(os.path.join(out, "two_moons_samples.png"), dpi=100)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", nargs="+", default=["two_moons", "gaussian_linear", "slcp"])
    parser.add_argument("--budgets", nargs="+", type=int, default=[10_000, 100_000])
    parser.add_argument("--observations", nargs="+", type=int, default=list(range(1, 11)))
    parser.add_argument("--methods", nargs="+", default=["NPE", "NPE-NSF", *OURS])
    parser.add_argument("--num_samples", type=int, default=10_000, help="posterior samples scored per observation")
    parser.add_argument("--seconds", type=float, default=180.0, help="training wall time of each of our runs")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="benchmarks/out/sbi")
    args = parser.parse_args()
    unknown = [m for m in args.methods if m not in OURS and m not in ("NPE", "NPE-NSF")]
    if unknown:
        parser.error(f"unknown methods {unknown}; choose from NPE, NPE-NSF, {', '.join(OURS)}")
    os.makedirs(args.out, exist_ok=True)
    rows = run(args)
    print()
    print(table(rows))
    if any(r["task"] == "two_moons" for r in rows):
        plot_two_moons(args.out, rows, args.observations[0])


if __name__ == "__main__":
    main()
