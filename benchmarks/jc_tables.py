"""Tables for the joint-contrastive family (issue 3), printed as markdown.

(a) JS divergence to the exact posterior on explaining-away at its fixed observations:
    likelihood-free JCAdv and JCDen (the likelihood wrapped as a sample-only simulator)
    next to PCAdv and a Gaussian VAE (both given the densities).
(b) Learning 2-D mixtures (ring: 8, grid: 25) with the shipped config settings: JCAdvRMD and
    JCAdv with the ALI loss, both an N(0, I) prior and an implicit likelihood; JCAdvRMD K=0
    (no unroll, so no model gradient) is the ablation showing that RMD does the work. ALI-paper metrics on 10,000
    model samples: modes covered (at least ``MIN_MODE_SAMPLES`` samples within 3 std of the
    mode) and the share of samples within 3 std of their nearest mode; plus reconstruction
    error ``E‖x − x̂‖²``, ``x̂ ~ p(x|z)``, ``z ~ q(z|x)`` on held-out data.
(c) Hybrid: JS against encoder updates for JCAdv, JCDen and JCHybrid (mixed gradient, and
    score penalty), all likelihood-free, on several seeds (``--hybrid-seeds``): the final JS and
    the encoder updates and training seconds to reach each of ``--targets``.
(d) Hybrid on the ring: JCAdv (KL form), JCDen and JCHybrid each learn the same model — an
    ``N(0, I)`` prior and a Gaussian likelihood, by maximum likelihood on encoder samples, the
    only model update all three have (JCHybrid cannot learn an implicit likelihood) — scored
    with the VEEGAN/PacGAN protocol along the run, on ``--hybrid-seeds``.

Every run: CPU, one thread; table (a): seed 0, table (b): seeds 0 and 1 (``--mixture-seeds``); ``--steps``
counts optimizer steps of all optimizers. The mixtures under the VEEGAN/PacGAN protocol are in
``benchmarks/mixtures.py``.

    OMP_NUM_THREADS=1 python benchmarks/jc_tables.py --steps 6000 --mixture-steps 12000
    OMP_NUM_THREADS=1 python benchmarks/jc_tables.py --tables c --hybrid-updates 1500 --hybrid-seeds 0,1,2,3,4
    OMP_NUM_THREADS=1 python benchmarks/jc_tables.py --tables d --ring-updates 3000 --hybrid-seeds 0,1,2,3,4
"""
from __future__ import annotations

import argparse
import logging
import statistics
import time
import warnings
from typing import Callable, Dict, List

import pytorch_lightning as pl
import torch

import ivi_lightning as ivi
from datamodules import ExplainingAwayLikelihood, Toy2DDataModule
from ivi_lightning.evaluation import posterior_js
from ivi_lightning.evaluation.modes import PROTOCOL_SAMPLES, mixture_modes, mode_coverage

warnings.filterwarnings("ignore")
logging.getLogger("pytorch_lightning").setLevel(logging.ERROR)
logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
MIN_MODE_SAMPLES = 20


class Simulator(ivi.Likelihood):
    """The explaining-away likelihood with its density hidden: a sample-only simulator."""

    def __init__(self) -> None:
        super().__init__()
        self.inner = ExplainingAwayLikelihood()

    def sample(self, z: torch.Tensor) -> torch.Tensor:
        return self.inner.sample(z)


class EveryN(pl.Callback):
    """Calls ``fn(trainer)`` every ``n`` training batches and at the end."""

    def __init__(self, n: int, fn: Callable) -> None:
        self.n, self.fn, self.batches = n, fn, 0

    def on_train_batch_end(self, trainer, *args) -> None:
        self.batches += 1
        if self.batches % self.n == 0:
            self.fn(trainer)

    def on_train_end(self, trainer, *args) -> None:
        if self.batches % self.n:
            self.fn(trainer)


def _fit(model, data, steps: int, callbacks=()) -> float:
    trainer = pl.Trainer(max_steps=steps, accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, limit_val_batches=0, callbacks=list(callbacks))
    start = time.time()
    trainer.fit(model, data)
    return time.time() - start


def optimizer_steps_per_update(name: str) -> int:
    """Optimizer steps per encoder update of the row ``name``: the VAE's one, or the encoder's step after
    3 auxiliary steps (the hybrids' 3 denoiser and 3 discriminator steps)."""
    return 1 if name == "VAE" else 7 if name.startswith("JCHybrid") else 4


def explaining_away_run(name: str, steps: int, evaluations: int = 1, seed: int = 0) -> Dict:
    """Train one algorithm on explaining-away; JS (mean over the observations) at ``evaluations`` points.

    Each point of ``curve`` is ``(optimizer step, encoder updates, training seconds so far, JS)``;
    the seconds leave out the evaluations themselves.
    """
    pl.seed_everything(seed)
    data = Toy2DDataModule("explaining_away", num_samples=20000, batch_size=256, seed=seed)
    data.setup()
    known = dict(prior=ivi.NormalPrior(2, 2.0), likelihood=ExplainingAwayLikelihood())
    free = dict(prior=ivi.NormalPrior(2, 2.0), likelihood=Simulator())
    common = dict(latent_dim=2, data_shape=1, learn_model=False, hidden=(64, 64))
    model = {
        "VAE": lambda: ivi.VAE(**common, **known),
        "PCAdv": lambda: ivi.PCAdv(**common, **known),
        "JCAdv (likelihood-free)": lambda: ivi.JCAdv(**common, **free),
        "JCDen (likelihood-free)": lambda: ivi.JCDen(**common, **free, data_noise_std=0.01),
        "JCHybrid mix 0.5": lambda: ivi.JCHybrid(**common, **free, data_noise_std=0.01, mix=0.5),
        "JCHybrid penalty 0.1 (mix 1)": lambda: ivi.JCHybrid(**common, **free, data_noise_std=0.01, mix=1.0, score_penalty=0.1),
    }[name]()
    curve: List = []
    clock = {"start": time.perf_counter(), "scoring": 0.0}

    def score(trainer) -> None:
        begin = time.perf_counter()
        js = posterior_js(model.sample_posterior, data.prior, data.likelihood, data.evaluation_points, 20000, data.latent_extent)
        seconds = begin - clock["start"] - clock["scoring"]
        curve.append((trainer.global_step, trainer.global_step // per_batch, seconds, js))
        clock["scoring"] += time.perf_counter() - begin

    # Optimizer steps per batch (one encoder update each), to place the evaluations at equal intervals.
    per_batch = optimizer_steps_per_update(name)
    seconds = _fit(model, data, steps, [EveryN(max(1, steps // evaluations // per_batch), score)]) - clock["scoring"]
    return {"name": name, "curve": curve, "seconds": seconds, "seed": seed}


def table_a(steps: int) -> None:
    rows = [explaining_away_run(name, steps) for name in ("VAE", "PCAdv", "JCAdv (likelihood-free)", "JCDen (likelihood-free)")]
    points = [0.01, 0.05, 0.2, 1.0]
    print(f"\n### (a) explaining-away: JS (nats) to the exact posterior after {steps} optimizer steps, seed 0\n")
    print("| algorithm | " + " | ".join(f"x={p}" for p in points) + " | mean | train s |")
    print("|---|" + "---|" * (len(points) + 2))
    for row in rows:
        js = row["curve"][-1][1]
        print(f"| {row['name']} | " + " | ".join(f"{v:.4f}" for v in js) + f" | {js.mean():.4f} | {row['seconds']:.0f} |")


@torch.no_grad()
def mixture_metrics(model, data, dataset: str) -> Dict[str, float]:
    """Modes covered and high-quality share of 10,000 model samples; reconstruction error."""
    modes, std = mixture_modes(dataset)
    x, _ = model.sample_model(10000)
    distance, nearest = torch.cdist(x, modes).min(1)
    good = distance < 3 * std
    counts = torch.bincount(nearest[good], minlength=len(modes))
    held_out = data.val_set.tensors[0][:2000]
    reconstruction = model.likelihood.sample(model.encoder(held_out))
    return {
        "modes": int((counts >= MIN_MODE_SAMPLES).sum()),
        "total": len(modes),
        "high_quality": float(good.float().mean()),
        "reconstruction": float((held_out - reconstruction).pow(2).sum(1).mean()),
    }


# The shipped settings (configs/jc_adv/{ring,grid}_ali.yaml, configs/jc_adv_rmd/{ring,grid}.yaml):
# 256-unit MLPs, one discriminator step per model step, batch 256, Adam lr 1e-3, betas (0.5, 0.999);
# 6000 model updates (12000 optimizer steps): at 3000 neither learned the grid (docs/benchmarks/implicit_models.md).
MIXTURE_COMMON = dict(latent_dim=2, data_shape=2, hidden=(256, 256), aux_steps=1)


def mixture_model(name: str) -> ivi.ImplicitVI:
    """The model of one row of table (b): ``JCAdv loss=ali``, or ``JCAdvRMD K=<k>`` (pure KL form, the
    class defaults: N(0, I) prior, 256-unit implicit likelihood with 4 noise inputs)."""
    if name == "JCAdv loss=ali":
        return ivi.JCAdv(**MIXTURE_COMMON, loss="ali", likelihood=ivi.ImplicitLikelihood(2, 2, 4, (256, 256)))
    return ivi.JCAdvRMD(**MIXTURE_COMMON, unroll_steps=int(name.removeprefix("JCAdvRMD K=")))


# K=0 is the ablation: the current discriminator plugged in gives the model no gradient.
MIXTURE_ROWS = (
    ("ring", "JCAdv loss=ali"),
    ("ring", "JCAdvRMD K=0"),
    ("ring", "JCAdvRMD K=1"),
    ("grid", "JCAdv loss=ali"),
    ("grid", "JCAdvRMD K=1"),
)


def table_b(steps: int, rows=MIXTURE_ROWS, seeds=(0,)) -> None:
    """Print table (b) for ``rows``, pairs ``(dataset, name)`` (see :func:`mixture_model`).

    Args:
        steps: optimizer steps of each run (all optimizers; two per model update here).
        rows: which rows to run.
        seeds: training seeds; one line per row and seed.
    """
    print(f"\n### (b) mixtures: {steps} optimizer steps ({steps // 2} model updates); modes covered = ≥{MIN_MODE_SAMPLES} of 10,000 samples within 3 std\n")
    print("| data | algorithm | seed | modes covered | high-quality samples | reconstruction ‖x − x̂‖² | train s |")
    print("|---|---|---|---|---|---|---|")
    for (dataset, name), seed in ((row, seed) for row in rows for seed in seeds):
        pl.seed_everything(seed)
        data = Toy2DDataModule(dataset, num_samples=20000, batch_size=256)
        data.setup()
        model = mixture_model(name)
        seconds = _fit(model, data, steps)
        m = mixture_metrics(model.eval(), data, dataset)
        print(f"| {dataset} | {name} | {seed} | {m['modes']}/{m['total']} | {m['high_quality']:.1%} | {m['reconstruction']:.3f} | {seconds:.0f} |", flush=True)


HYBRID_ROWS = ("JCAdv (likelihood-free)", "JCDen (likelihood-free)", "JCHybrid mix 0.5", "JCHybrid penalty 0.1 (mix 1)")


def table_c(updates: int, evaluations: int, seeds=(0,), targets=(0.05, 0.02), names=HYBRID_ROWS) -> None:
    """Print table (c): each algorithm trained ``updates`` encoder updates per seed.

    Args:
        updates: encoder updates (batches) of every run; the optimizer steps differ per algorithm.
        evaluations: JS evaluations along each run.
        seeds: training seeds.
        targets: mean JS values (nats) whose first crossing is timed.
        names: the rows, a subset of ``HYBRID_ROWS``.
    """
    runs = {name: [explaining_away_run(name, updates * optimizer_steps_per_update(name), evaluations, seed)
                   for seed in seeds] for name in names}
    print(f"\n### (c) hybrid: mean JS (nats) on explaining-away, likelihood-free, {updates} encoder updates, seeds {list(seeds)}\n")
    print("| algorithm | seed | mean JS at encoder update | train s |")
    print("|---|---|---|---|")
    for name, rows in runs.items():
        for row in rows:
            print(f"| {name} | {row['seed']} | " + ", ".join(f"{u}: {js.mean():.4f}" for _, u, _, js in row["curve"]) + f" | {row['seconds']:.0f} |")
    print(f"\nfinal JS: mean ± std over seeds; to a target: the first evaluation with mean JS ≤ the target, the median over the seeds "
          "that reached it of the encoder updates and training seconds (n/5: how many seeds reached it)\n")
    print("| algorithm | final mean JS | " + " | ".join(f"to JS ≤ {t}: seeds, updates, train s" for t in targets) + " | train s, whole run |")
    print("|---|---|" + "---|" * len(targets) + "---|")
    for name, rows in runs.items():
        finals = [float(row["curve"][-1][3].mean()) for row in rows]
        cells = []
        for target in targets:
            hits = [next(((u, t) for _, u, t, js in row["curve"] if js.mean() <= target), None) for row in rows]
            reached = [h for h in hits if h is not None]
            median = (f", {statistics.median(u for u, _ in reached):.0f}, {statistics.median(t for _, t in reached):.0f}" if reached else "")
            cells.append(f"{len(reached)}/{len(rows)}{median}")
        print(f"| {name} | {statistics.mean(finals):.4f} ± {statistics.pstdev(finals):.4f} | " + " | ".join(cells) + " | "
              f"{statistics.mean(row['seconds'] for row in rows):.0f} |")


RING_ROWS = ("JCAdv", "JCDen", "JCHybrid mix 0.5", "JCHybrid penalty 0.1 (mix 1)")


def ring_run(name: str, updates: int, evaluations: int, seed: int) -> Dict:
    """One row of table (d): ``name`` learns a Gaussian-likelihood model of the ring for ``updates``
    model updates; ``curve`` holds ``(model updates, training seconds so far, protocol scores)``."""
    pl.seed_everything(seed)
    data = Toy2DDataModule("ring", num_samples=20000, batch_size=256, seed=seed)
    common = dict(latent_dim=2, data_shape=2, hidden=(256, 256), likelihood_family="gaussian")
    model = {
        "JCAdv": lambda: ivi.JCAdv(**common),
        "JCDen": lambda: ivi.JCDen(**common),
        "JCHybrid mix 0.5": lambda: ivi.JCHybrid(**common, mix=0.5),
        "JCHybrid penalty 0.1 (mix 1)": lambda: ivi.JCHybrid(**common, mix=1.0, score_penalty=0.1),
    }[name]()
    modes, std = mixture_modes("ring")
    curve: List = []
    clock = {"start": time.perf_counter(), "scoring": 0.0}

    @torch.no_grad()
    def score(trainer) -> None:
        begin = time.perf_counter()
        samples, _ = model.sample_model(PROTOCOL_SAMPLES)
        curve.append((trainer.global_step // per_update, begin - clock["start"] - clock["scoring"],
                      mode_coverage(samples, modes, std)))
        clock["scoring"] += time.perf_counter() - begin

    per_update = optimizer_steps_per_update(name)
    _fit(model, data, updates * per_update, [EveryN(max(1, updates // evaluations), score)])
    return {"name": name, "seed": seed, "curve": curve}


def table_d(updates: int, evaluations: int, seeds=(0,), names=RING_ROWS) -> None:
    """Print table (d): each of ``names`` learns the ring's Gaussian-likelihood model, per seed.

    Args:
        updates: model (= encoder) updates of every run.
        evaluations: protocol scores along each run.
        seeds: training seeds.
        names: the rows, a subset of ``RING_ROWS``.
    """
    runs = {name: [ring_run(name, updates, evaluations, seed) for seed in seeds] for name in names}
    print(f"\n### (d) hybrid on the ring: a Gaussian-likelihood model learned by maximum likelihood, {updates} model updates, "
          f"seeds {list(seeds)}; {PROTOCOL_SAMPLES} samples\n")
    print("| algorithm | seed | modes, high-quality share at model update | KL to uniform | train s |")
    print("|---|---|---|---|---|")
    for name, rows in runs.items():
        for row in rows:
            points = ", ".join(f"{u}: {int(m['modes'])}, {m['high_quality']:.0%}" for u, _, m in row["curve"])
            print(f"| {name} | {row['seed']} | {points} | {row['curve'][-1][2]['kl_to_uniform']:.3f} | {row['curve'][-1][1]:.0f} |")
    print("\nfinal scores: mean ± std over seeds; every mode: the seeds covering all 8 at the end, and the median model "
          "updates and training seconds to the first evaluation that did\n")
    print("| algorithm | modes | high-quality samples | KL to uniform | every mode: seeds, updates, train s | train s |")
    print("|---|---|---|---|---|---|")
    for name, rows in runs.items():
        finals = [row["curve"][-1][2] for row in rows]
        cell = lambda key, f: f"{f(statistics.mean(m[key] for m in finals))} ± {f(statistics.pstdev(m[key] for m in finals))}"
        firsts = [next(((u, t) for u, t, m in row["curve"] if m["modes"] == 8), None) for row in rows]
        reached = [f for f in firsts if f is not None]
        median = f", {statistics.median(u for u, _ in reached):.0f}, {statistics.median(t for _, t in reached):.0f}" if reached else ""
        print(f"| {name} | {cell('modes', lambda v: f'{v:.1f}')} | {cell('high_quality', lambda v: f'{100 * v:.1f}%')} | "
              f"{cell('kl_to_uniform', lambda v: f'{v:.3f}')} | {sum(m['modes'] == 8 for m in finals)}/{len(rows)}{median} | "
              f"{statistics.mean(row['curve'][-1][1] for row in rows):.0f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=6000, help="optimizer steps for table (a)")
    parser.add_argument("--mixture-steps", type=int, default=12000, help="optimizer steps for table (b) (two per model update)")
    parser.add_argument("--mixture-seeds", default="0,1", help="comma-separated training seeds for table (b)")
    parser.add_argument("--mixture-rows", default=None, help="comma-separated indices into MIXTURE_ROWS for table (b), e.g. '0,2'")
    parser.add_argument("--evaluations", type=int, default=8, help="JS evaluations along each run of table (c)")
    parser.add_argument("--hybrid-updates", type=int, default=1500, help="encoder updates of each run of table (c)")
    parser.add_argument("--hybrid-seeds", default="0,1,2,3,4", help="comma-separated training seeds for table (c)")
    parser.add_argument("--hybrid-rows", default="0,1,2,3", help="comma-separated indices into HYBRID_ROWS for table (c)")
    parser.add_argument("--targets", default="0.05,0.02", help="comma-separated mean JS values (nats) timed in table (c)")
    parser.add_argument("--ring-updates", type=int, default=3000, help="model updates of each run of table (d)")
    parser.add_argument("--ring-rows", default="0,1,2,3", help="comma-separated indices into RING_ROWS for table (d)")
    parser.add_argument("--tables", default="abc", help="which tables to print, e.g. 'ab'")
    args = parser.parse_args()
    torch.set_num_threads(1)
    if "a" in args.tables:
        table_a(args.steps)
    if "b" in args.tables:
        rows = MIXTURE_ROWS if args.mixture_rows is None else [MIXTURE_ROWS[int(i)] for i in args.mixture_rows.split(",")]
        table_b(args.mixture_steps, rows, [int(s) for s in args.mixture_seeds.split(",")])
    if "c" in args.tables:
        table_c(args.hybrid_updates, args.evaluations, [int(s) for s in args.hybrid_seeds.split(",")],
                [float(t) for t in args.targets.split(",")], [HYBRID_ROWS[int(i)] for i in args.hybrid_rows.split(",")])
    if "d" in args.tables:
        table_d(args.ring_updates, args.evaluations, [int(s) for s in args.hybrid_seeds.split(",")],
                [RING_ROWS[int(i)] for i in args.ring_rows.split(",")])


if __name__ == "__main__":
    main()
