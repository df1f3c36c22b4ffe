"""sbibm side by side: our likelihood-free algorithms against sbi's NPE, scored by C2ST.

For every task, simulation budget and method: one amortised training on ``budget`` simulated
pairs (the same pairs for every method, from ``--seed``), then posterior samples at each
observation, scored against sbibm's reference posterior samples with sbibm's own ``c2st``
(so the numbers compare with sbibm's published table). Prints a markdown table (C2ST mean ±
standard error over observations, per observation, share of samples outside the prior's
support, on two_moons the smallest share of samples in either crescent over the observations,
simulations used, training seconds), a learning curve of ``--curve_method`` on ``--curve_task``
(C2ST of observation 1 against training seconds, for the time to reach NPE's C2ST; two_moons by
default), with ``--validate_every`` the held-out ``val/*`` metrics during training, and writes a
PNG grid of two_moons samples.

Methods: ``NPE`` (sbi's ``NPE`` with its defaults, a masked autoregressive flow), ``NPE-NSF``
(sbibm's setting, a neural spline flow) and ours, each with the settings in ``OURS`` (the same as
``configs/<algorithm>/sbi_two_moons.yaml``); ours train for ``--steps`` optimizer steps each (or, with
``--steps 0``, for ``--seconds`` of wall time).

Install (sbibm pins an old sbi; its reference posteriors ship inside the package)::

    pip install -e '.[sbi]' && pip install sbibm==1.1.0 --no-deps

Run (this CPU: one thread per training)::

    OMP_NUM_THREADS=1 python benchmarks/sbi_benchmark.py --tasks two_moons slcp gaussian_linear \\
        --budgets 10000 --observations 1 2 3 --num_samples 2000 --steps 30000
"""
from __future__ import annotations

import argparse
import json
import logging
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

# JCDen's setting of configs/jc_den/sbi_two_moons.yaml, shared by the hybrid below.
JCDEN_DIFFUSION = dict(model_score="denoiser", noise_std=0.005, max_noise_std=3.0, noise_components=8,
                       posterior_sampler="diffusion", diffusion_steps=500, sampler_ema=0.999,
                       denoiser_hidden=(512, 512, 512), support_mode="reject")

# Our methods: algorithm and settings.
OURS: Dict[str, tuple] = {
    "JCDen": ("JCDen", dict(model_score="denoiser", noise_std=0.02, max_noise_std=1.0, noise_components=8)),
    "JCDen(diffusion)": ("JCDen", JCDEN_DIFFUSION),
    # JCDen(diffusion) with the joint discriminator's gradient mixed into the encoder's (half and half).
    "JCHybrid(diffusion)": ("JCHybrid", {**JCDEN_DIFFUSION, "mix": 0.5}),
    # The setting of the 2026-12-02 morning run: 256×256 denoisers, the support by transform, no average.
    "JCDen(diffusion,256x2)": ("JCDen", dict(model_score="denoiser", noise_std=0.005, max_noise_std=3.0,
                                            noise_components=8, posterior_sampler="diffusion", diffusion_steps=500)),
    # Joint discriminators with a mixture encoder, seeing both joints' θ blurred by noise annealed
    # from 1 to 0 over the first half of training (configs/jc_adv/sbi_two_moons.yaml: the reverse KL).
    **{f"JCAdv({loss},noise)": ("JCAdv", dict(loss=loss, noise_components=8, support_mode="reject",
                                              instance_noise=1.0, instance_noise_steps=15_000))
       for loss in ("kl", "forward_kl", "ali")},
    "JCAdv": ("JCAdv", dict(loss="kl")),
    "JCAdv(forward_kl)": ("JCAdv", dict(loss="forward_kl")),
    "JCAdv(ali)": ("JCAdv", dict(loss="ali")),
}
NPE_ESTIMATORS = {"NPE": "maf", "NPE-NSF": "nsf"}


def load_task(name: str):
    import sbibm

    return sbibm.get_task(name)


def train_npe(prior, theta: torch.Tensor, x: torch.Tensor, estimator: str) -> Callable:
    from sbi.inference import NPE

    inference = NPE(prior=prior, density_estimator=estimator, show_progress_bars=False)
    inference.append_simulations(theta, x).train()
    posterior = inference.build_posterior()
    return lambda x_o, n: posterior.sample((n,), x=x_o.unsqueeze(0), show_progress_bars=False)


class LearningCurve(pl.Callback):
    """C2ST at one observation each time training has run another ``every`` seconds, or with
    ``every_steps`` another that many optimizer steps (scoring time excluded from the seconds)."""

    def __init__(self, score: Callable[[ivi.ImplicitVI], float], every: float, every_steps: int = 0) -> None:
        self.score, self.every, self.every_steps, self.trained, self.points = score, every, every_steps, 0.0, []
        self.started = time.time()

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.started = time.time()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.trained += time.time() - self.started
        due = len(self.points) + 1
        if (trainer.global_step >= self.every_steps * due) if self.every_steps else (self.trained >= self.every * due):
            pl_module.eval()
            with torch.no_grad():
                self.points.append((self.trained, self.score(pl_module)))
            pl_module.train()


def train_ours(method: str, prior, simulator, budget: int, seed: int, seconds: float, steps: int,
               curve: LearningCurve = None, validate_every: int = 0) -> Callable:
    algorithm, options = OURS[method]
    pl.seed_everything(seed, verbose=False)
    data = SimulatorDataModule(prior, simulator, num_simulations=budget, batch_size=256, seed=seed)
    model = getattr(ivi, algorithm)(latent_dim=data.latent_dim, data_shape=data.data_shape, learn_model=False, **options)
    if steps:
        limit, callbacks = dict(max_steps=steps, max_epochs=-1), [curve] if curve else []
    else:
        limit = dict(max_steps=-1, max_epochs=-1) if curve else dict(max_time={"seconds": seconds}, max_epochs=-1)
        callbacks = [curve, _StopAfter(curve, seconds)] if curve else []
    validation = ValidationLog()
    if validate_every:
        limit.update(check_val_every_n_epoch=validate_every, num_sanity_val_steps=0)
        callbacks = [*callbacks, validation]
    trainer = pl.Trainer(**limit, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, limit_val_batches=1.0 if validate_every else 0, callbacks=callbacks)
    trainer.fit(model, data)
    model.eval()

    def sample(x_o: torch.Tensor, n: int) -> torch.Tensor:
        with torch.no_grad():
            return model.sample_posterior(x_o, n)

    sample.simulations, sample.validation = data.simulation_count, validation.points
    return sample


class ValidationLog(pl.Callback):
    """The held-out ``val/*`` metrics at every validation, with the optimizer step."""

    def __init__(self) -> None:
        self.points: List[dict] = []

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        if not trainer.sanity_checking:
            metrics = {k: round(float(v), 4) for k, v in trainer.callback_metrics.items() if k.startswith("val/")}
            self.points.append({"step": trainer.global_step, **metrics})


class _StopAfter(pl.Callback):
    """Stops training once the learning curve has counted ``seconds`` of training."""

    def __init__(self, curve: LearningCurve, seconds: float) -> None:
        self.curve, self.seconds = curve, seconds

    def on_train_batch_end(self, trainer, *args) -> None:
        if self.curve.trained >= self.seconds:
            trainer.should_stop = True


def outside_support(prior, samples: torch.Tensor) -> float:
    return 1.0 - prior.support.check(samples).float().mean().item()


def smaller_crescent(samples: torch.Tensor) -> float:
    """two_moons: the share of samples in the less populated of the posterior's two crescents.

    The simulator sees ``θ₁ + θ₂`` only through ``|θ₁ + θ₂|``, so the crescents are mirror images
    on either side of ``θ₁ + θ₂ = 0`` and hold half the mass each (the reference: 0.49–0.50); ``0``
    means one crescent was dropped.
    """
    above = (samples[:, 0] + samples[:, 1] > 0).float().mean().item()
    return min(above, 1.0 - above)


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
                start, curve = time.time(), None
                if method in NPE_ESTIMATORS:
                    if args.npe_seed is not None:
                        torch.manual_seed(args.npe_seed)
                    sample = train_npe(prior, theta, x, NPE_ESTIMATORS[method])
                    used = budget
                else:
                    if task_name == args.curve_task and method == args.curve_method:
                        x_1, reference_1 = task.get_observation(1)[0], task.get_reference_posterior_samples(1)[: args.num_samples]
                        score = lambda model: float(c2st(reference_1, model.sample_posterior(x_1, args.num_samples)))
                        curve = LearningCurve(score, args.seconds / 6, args.steps // 6)
                    sample = train_ours(method, prior, simulator, budget, args.seed, args.seconds, args.steps, curve,
                                        args.validate_every)
                    used = sample.simulations
                seconds = curve.trained if curve else time.time() - start
                scores, outside, crescent, draws = [], [], [], None
                for obs in args.observations:
                    x_o = task.get_observation(obs)[0]
                    reference = task.get_reference_posterior_samples(obs)[: args.num_samples]
                    samples = sample(x_o, args.num_samples)
                    outside.append(outside_support(prior, samples))
                    if task_name == "two_moons":
                        crescent.append(smaller_crescent(samples))
                    scores.append(float(c2st(reference, samples)))
                    if draws is None:
                        draws = samples
                mean = sum(scores) / len(scores)
                se = (sum((s - mean) ** 2 for s in scores) / max(1, len(scores) - 1) / len(scores)) ** 0.5
                row = dict(task=task_name, method=method, budget=budget, c2st=scores, mean=mean, se=se,
                           outside=max(outside), smaller_crescent=min(crescent, default=None),
                           simulations=used, seconds=seconds,
                           curve=[(round(t), round(c, 3)) for t, c in curve.points] if curve else None,
                           validation=getattr(sample, "validation", None) or None)
                rows.append(row)
                print(json.dumps(row), flush=True)
                if task_name == "two_moons":
                    torch.save(draws, os.path.join(args.out, f"two_moons_{method}_{budget}.pt"))
    return rows


def table(rows: List[dict]) -> str:
    lines = ["| task | method | budget | C2ST mean ± s.e. | per observation | outside support | smaller crescent (min) "
             "| simulations | training s |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        per = " / ".join(f"{s:.3f}" for s in r["c2st"])
        crescent = "" if r["smaller_crescent"] is None else f"{100 * r['smaller_crescent']:.0f} %"
        lines.append(f"| {r['task']} | {r['method']} | {r['budget']:,} | {r['mean']:.3f} ± {r['se']:.3f} | {per} | "
                     f"{100 * r['outside']:.1f} % | {crescent} | {r['simulations']:,} | {r['seconds']:.0f} |")
    for r in rows:
        if r["curve"]:
            points = ", ".join(f"{t} s: {c:.3f}" for t, c in r["curve"])
            lines.append(f"\nLearning curve, {r['method']} on {r['task']} ({r['budget']:,}), C2ST of observation 1: {points}")
    for r in rows:
        if r.get("validation"):
            points = "; ".join(", ".join(f"{k}: {v}" for k, v in p.items()) for p in r["validation"])
            lines.append(f"\nValidation, {r['method']} on {r['task']} ({r['budget']:,}): {points}")
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
            panels.append((f"{r['method']} ({r['budget']:,}): C2ST {r['c2st'][0]:.2f}", torch.load(path)))
    fig, axes = plt.subplots(1, len(panels), figsize=(2.6 * len(panels), 2.8), squeeze=False)
    for ax, (title, samples) in zip(axes[0], panels):
        ax.scatter(samples[:, 0], samples[:, 1], s=1, alpha=0.3)
        ax.set_title(title, fontsize=8)
        ax.set_xlim(-1, 1)
        ax.set_ylim(-1, 1)
        ax.set_aspect("equal")
    fig.tight_layout()
    fig.savefig(os.path.join(out, "two_moons_samples.png"), dpi=90)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", nargs="+", default=["two_moons", "slcp", "gaussian_linear"])
    parser.add_argument("--budgets", nargs="+", type=int, default=[10_000, 100_000])
    parser.add_argument("--observations", nargs="+", type=int, default=list(range(1, 11)))
    parser.add_argument("--methods", nargs="+", default=["NPE", "NPE-NSF", *OURS])
    parser.add_argument("--npe_seed", type=int, default=None,
                        help="seed of NPE's training (default: the random state left by the simulations)")
    parser.add_argument("--curve_method", default="JCDen(diffusion)", help="ours whose learning curve is recorded")
    parser.add_argument("--curve_task", default="two_moons", help="the task whose learning curve is recorded")
    parser.add_argument("--validate_every", type=int, default=0,
                        help="record ours' held-out val/* metrics every this many epochs (0: no validation)")
    parser.add_argument("--num_samples", type=int, default=10_000, help="posterior samples scored per observation")
    parser.add_argument("--steps", type=int, default=30_000, help="optimizer steps of each of our runs (0: use --seconds)")
    parser.add_argument("--seconds", type=float, default=180.0, help="training wall time of each of our runs with --steps 0")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="benchmarks/out/sbi")
    args = parser.parse_args()
    unknown = [m for m in args.methods if m not in OURS and m not in NPE_ESTIMATORS]
    if unknown:
        parser.error(f"unknown methods {unknown}; choose from {', '.join([*NPE_ESTIMATORS, *OURS])}")
    os.makedirs(args.out, exist_ok=True)
    rows = run(args)
    print()
    print(table(rows))
    if any(r["task"] == "two_moons" for r in rows):
        plot_two_moons(args.out, rows, args.observations[0])


if __name__ == "__main__":
    main()
