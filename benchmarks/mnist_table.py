"""Dynamically binarised MNIST: algorithm × latent size, AIS test log-likelihood.

    python benchmarks/mnist_table.py --profile gpu --data_dir data          # the table (GPU)
    python benchmarks/mnist_table.py --profile cpu --jobs 2 --data_dir data   # the CPU table (2 cores, ~26 min)
    python benchmarks/mnist_table.py --updates 20 --ais_examples 4 --num_temperatures 20 \\
        --num_chains 2 --leapfrog_steps 2 --latent_dims 8                    # smoke run (~1 min)
    python benchmarks/mnist_table.py --profile cpu --jobs 2 --data_dir data \\
        --algorithms VAE PCDen+LS --latent_dims 8 --time_matched --updates 6000   # + a same-time VAE (~9 min)

Every algorithm gets the same networks (the profile's ``architecture``, hidden sizes, noise) and
the same budget: ``--updates`` training batches (encoder updates; the auxiliary network takes
its ``aux_steps`` extra optimizer steps per batch), each scored with an exponential moving average of
its weights (``--ema_decay``, the profile's; 0 scores the last iterate). Prints a markdown table: the plug-in ELBO
estimate on the test examples where the algorithm has one (VAE: the ELBO itself), the AIS
``log p(x)`` on the first ``--ais_examples`` test images ± its std over examples, the IWAE bound
for the VAE, training time and training images/s; then the published reference points. With
``--time_matched``, every implicit row also gets a VAE trained for as many seconds as that row
took (as many batches as fit): the same-time comparison. With ``--jobs 2`` the two train side by
side, the VAE stopping once it has trained as long, so both see the same machine load.
"""
from __future__ import annotations

import argparse
import multiprocessing
import time
import warnings
from concurrent.futures import ProcessPoolExecutor
from typing import Dict, Optional

import pytorch_lightning as pl
import torch

from datamodules import MNISTDataModule
from ivi_lightning import JCAdv, JCDen, PCAdv, PCDen, VAE
from ivi_lightning.data import batch_tensor
from ivi_lightning.training import EMAWeightAveraging, NonFiniteLossError
from ivi_lightning.evaluate import evaluate

ALGORITHMS = {
    "VAE": (VAE, {}),
    "PCAdv": (PCAdv, {}),
    # Adaptive contrast against the location-scale encoder's own Gaussian reference; its discriminator
    # is a small MLP on ((μ, log σ), z̃), so six steps per update cost little (best of 3/6/10 for an earlier variant, seed 0).
    # aux_lr 3e-3, the profile's lr: at z = 32 (seed 0, averaged weights) +0.59 ± 0.49 against the VAE, where 1e-3 gave −2.05 ± 0.62.
    "PCAdv+AC": (PCAdv, {"adaptive_contrast": True, "aux_steps": 6, "aux_lr": 3e-3}),
    "PCDen": (PCDen, {}),
    # The denoiser counterpart: it denoises the location-scale encoder's standardised u given (μ, log σ), a small MLP.
    # One denoiser update on six draws of u per example (1.4 ms) instead of six on one (4.8 ms), as good at z = 8
    # (seed 0, lr 3e-3: +0.12 vs +0.13 nats against the VAE); noise_std 0.6 (of u's unit scale) against 0.3: z = 32 −0.90 vs −1.72.
    "PCDen+LS": (PCDen, {"location_scale": True, "aux_steps": 1, "denoiser_samples": 6, "aux_lr": 3e-3, "noise_std": 0.6}),
    "JCAdv": (JCAdv, {}),
    "JCDen": (JCDen, {}),
}

PROFILES = {
    # conv_small networks and a short budget: a 2-core CPU in about an hour for the whole table.
    # lr 3e-3: at this budget the VAE's AIS (z = 8, seed 0) is −107.8 with 3e-4, −100.0 with 1e-3, −96.6 with 2e-3,
    # −95.0 with 3e-3 and −95.7 with 5e-3.
    # ema_decay: every row is scored with an exponential moving average of its weights, updated once a batch (Lightning's
    # EMAWeightAveraging); 0 scores the last iterate. 0.99 (a 100-batch horizon) at z = 8, seeds 0–3: see docs/benchmarks/mnist.md.
    "cpu": dict(architecture="conv_small", hidden=(256,), noise_dim=8, lr=3e-3, batch_size=128, updates=1500, ema_decay=0.99,
                ais_examples=50, num_temperatures=300, num_chains=8, leapfrog_steps=5, iwae_samples=1000, accelerator="cpu"),
    # DCGAN/AVB-sized conv networks and a long budget, AIS as in Wu et al. (1000 test images).
    # ema_decay 0.999 is the usual choice for long runs, not measured here.
    "gpu": dict(architecture="conv", hidden=(512,), noise_dim=16, lr=3e-4, batch_size=128, updates=100000, ema_decay=0.999,
                ais_examples=1000, num_temperatures=1000, num_chains=16, leapfrog_steps=10, iwae_samples=5000, accelerator="gpu"),
}

REFERENCES = [
    ("AVB + adaptive contrast, z=32 (Mescheder et al. 2017)", "−82.3 ± 0.3", "−81.8 ± 0.4"),
    ("IAF VAE (Kingma et al. 2016)", "—", "−79.1 (log-likelihood)"),
    ("plain VAE, MLP networks (various)", "—", "≈ −86 to −90"),
]


class StopAfterBatches(pl.Callback):
    """Stops training after ``batches`` training batches (whatever the number of optimizers) or,
    if given, once ``seconds`` of training have passed, whichever comes first.

    ``twin`` (a ``(done, seconds)`` pair of a shared ``Event`` and ``Value``) links two runs side by
    side: the one given ``report=True`` publishes its training time when it ends, the other stops
    once it has trained as long. Both then share the machine the same way (on a 2-core VM a VAE's
    batches per second varied by about 10 % with what ran beside it: 34.9 beside another VAE, 31.5
    beside another job).
    """

    def __init__(self, batches: int, seconds: Optional[float] = None, twin=None, report: bool = False) -> None:
        self.batches, self.seconds, self.seen, self.train_seconds = batches, seconds, 0, 0.0
        self.twin, self.report = twin, report
        self._start: Optional[float] = None

    def on_train_start(self, trainer, pl_module) -> None:
        self._start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.seen += 1
        elapsed = time.perf_counter() - self._start
        out_of_time = self.seconds is not None and elapsed >= self.seconds
        twin_done = self.twin is not None and not self.report and self.twin[0].is_set() and elapsed >= self.twin[1].value
        if self.seen >= self.batches or out_of_time or twin_done:
            trainer.should_stop = True

    def on_train_end(self, trainer, pl_module) -> None:
        self.train_seconds = time.perf_counter() - self._start
        if self.twin is not None and self.report:
            self.twin[1].value = self.train_seconds
            self.twin[0].set()


def run(name: str, latent_dim: int, profile: Dict, args: argparse.Namespace, seconds: Optional[float] = None, twin=None, report: bool = False) -> Dict:
    """Train ``name`` for ``args.updates`` batches (or, given ``seconds`` or a ``twin`` to follow, for
    that long; see :class:`StopAfterBatches`) and score it."""
    algorithm, options = ALGORITHMS[name]
    pl.seed_everything(args.seed, verbose=False)
    data = MNISTDataModule(args.data_dir, batch_size=profile["batch_size"], seed=args.seed)
    model = algorithm(
        latent_dim=latent_dim, data_shape=data.data_shape, architecture=profile["architecture"], hidden=profile["hidden"],
        noise_dim=profile["noise_dim"], likelihood_family="bernoulli", lr=profile["lr"], **options,
    )
    follows = seconds is not None or (twin is not None and not report)
    stopper = StopAfterBatches(10**9 if follows else args.updates, seconds, twin, report)
    # The average is taken once a batch, whatever the number of optimizer steps in it; it replaces the weights when training ends.
    averaging = [EMAWeightAveraging(decay=args.ema_decay)] if args.ema_decay > 0 else []
    trainer = pl.Trainer(
        max_steps=-1, max_epochs=10**6, accelerator=profile["accelerator"], devices=1, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0, callbacks=[stopper, *averaging],
    )
    try:
        trainer.fit(model, data)
    finally:
        if twin is not None and report and not twin[0].is_set():  # it failed: release the twin, which would wait for ever
            twin[0].set()
    device = "cuda" if profile["accelerator"] == "gpu" else "cpu"
    model = model.to(device).eval()
    data.setup("test")
    loader = data.test_dataloader()
    # Plug-in ELBO estimate on the same test examples AIS scores (where the algorithm has one).
    elbo = None
    with torch.no_grad():
        values, seen = [], 0
        for batch in loader:
            x = batch_tensor(batch)[: args.ais_examples - seen].to(device)
            estimate = model.elbo_estimate(x)
            if estimate is None:
                break
            values.append(estimate.cpu())
            seen += x.shape[0]
            if seen >= args.ais_examples:
                break
        if values:
            elbo = float(torch.cat(values).mean())
    scores = evaluate(
        model, loader, num_temperatures=args.num_temperatures, num_chains=args.num_chains, leapfrog_steps=args.leapfrog_steps,
        max_examples=args.ais_examples, iwae_samples=args.iwae_samples if name == "VAE" else 0, device=device,
    )
    images = stopper.seen * profile["batch_size"]
    return dict(elbo=elbo, **scores, train_seconds=stopper.train_seconds, images_per_second=images / max(stopper.train_seconds, 1e-9),
                batches=stopper.seen)


def _attempt(job) -> Dict:
    """``run(*job)``, or, if training diverges, a result saying so: one row's NaN does not cost the table."""
    try:
        return run(*job)
    except NonFiniteLossError as error:
        return dict(failed=str(error).split(";")[0])


def _run_row(job) -> Dict:
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore")
    return _attempt(job)


def _run_rows(jobs: list, args: argparse.Namespace) -> list:
    """``run`` argument tuples, ``args.jobs`` side by side (one thread each), in order."""
    if args.jobs > 1:
        with ProcessPoolExecutor(args.jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
            return list(pool.map(_run_row, jobs))
    return [_attempt(job) for job in jobs]


def _run_table(rows: list, profile: Dict, args: argparse.Namespace):
    """``(results, same_time_vaes)``: each row's result, in order, and with ``--time_matched`` a
    VAE for each implicit row, trained for as long as that row trained.

    With ``--jobs 2`` each implicit row trains beside its VAE, which stops once it has trained as
    long: both see the same machine load. With one job the VAE runs afterwards, for the row's time.
    """
    if not args.time_matched:
        return _run_rows([(name, z, profile, args) for name, z in rows], args), {}
    implicit = [row for row in rows if row[0] != "VAE"]
    if args.jobs < 2:
        done = dict(zip(rows, _run_rows([(name, z, profile, args) for name, z in rows], args)))
        implicit = [row for row in implicit if "failed" not in done[row]]
        vaes = _run_rows([("VAE", z, profile, args, done[(name, z)]["train_seconds"]) for name, z in implicit], args)
        return [done[row] for row in rows], dict(zip(implicit, vaes))
    others = [row for row in rows if row not in implicit]
    done = dict(zip(others, _run_rows([(name, z, profile, args) for name, z in others], args)))
    matched = {}
    with multiprocessing.get_context("spawn").Manager() as manager:
        for name, z in implicit:  # one pair at a time, so that the two really run side by side
            twin = (manager.Event(), manager.Value("d", 0.0))
            done[(name, z)], matched[(name, z)] = _run_rows([(name, z, profile, args, None, twin, True), ("VAE", z, profile, args, None, twin)], args)
    return [done[row] for row in rows], matched


def paired_difference(result: Dict, reference: Optional[Dict]) -> str:
    """Mean per-example AIS difference to ``reference`` on the same test images, ± its standard error.

    ``log p(x)`` varies by tens of nats between images, so the two means' own errors hide model
    differences that the per-image differences show.
    """
    if reference is None or reference is result or "failed" in reference:
        return "—"
    diff = torch.tensor(result["ais_per_example"], dtype=torch.float64) - torch.tensor(reference["ais_per_example"], dtype=torch.float64)
    sem = float(diff.std() / diff.numel() ** 0.5) if diff.numel() > 1 else 0.0
    return f"{float(diff.mean()):+.2f} ± {sem:.2f}"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", choices=list(PROFILES), default="cpu")
    parser.add_argument("--data_dir", default="data", help="directory holding MNIST/raw (torchvision's layout)")
    parser.add_argument("--latent_dims", type=int, nargs="+", default=[8, 32])
    parser.add_argument("--algorithms", nargs="+", default=list(ALGORITHMS), choices=list(ALGORITHMS))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--jobs", type=int, default=1, help="rows trained and scored side by side, one thread each")
    parser.add_argument("--time_matched", action="store_true", help="also train a VAE for each implicit row's training time")
    for key in ("updates", "ais_examples", "num_temperatures", "num_chains", "leapfrog_steps", "iwae_samples"):
        parser.add_argument(f"--{key}", type=int, default=None, help="override the profile's value")
    parser.add_argument("--ema_decay", type=float, default=None, help="override the profile's weight average (0: score the last iterate)")
    args = parser.parse_args(argv)
    profile = PROFILES[args.profile]
    if args.ema_decay is None:
        args.ema_decay = profile["ema_decay"]
    if not 0 <= args.ema_decay < 1:
        parser.error(f"--ema_decay must be in [0, 1), got {args.ema_decay}")
    if args.ema_decay > 0 and EMAWeightAveraging is None:
        parser.error(f"--ema_decay {args.ema_decay} needs Lightning's EMAWeightAveraging (pytorch-lightning >= 2.6): upgrade, or pass --ema_decay 0")
    for key in ("updates", "ais_examples", "num_temperatures", "num_chains", "leapfrog_steps", "iwae_samples"):
        if getattr(args, key) is None:
            setattr(args, key, profile[key])
        if getattr(args, key) <= 0 and key != "iwae_samples":
            parser.error(f"--{key} must be positive, got {getattr(args, key)}")
    warnings.filterwarnings("ignore")

    weights = f"weights averaged (EMA {args.ema_decay})" if args.ema_decay else "last iterate"
    print(
        f"\nDynamically binarised MNIST, profile {args.profile}: {profile['architecture']} networks, {args.updates} training batches of "
        f"{profile['batch_size']}, seed {args.seed}, {weights}. AIS on the first {args.ais_examples} test images: {args.num_temperatures} "
        f"temperatures × {args.num_chains} chains × {args.leapfrog_steps} leapfrog steps (nats; ± std over examples).\n"
    )
    rows = [(name, latent_dim) for latent_dim in args.latent_dims for name in args.algorithms]
    # One thread per job: rows run side by side (the training times then share the machine).
    results, matched = _run_table(rows, profile, args)
    same_time = " | AIS − same-time VAE's (paired ± s.e.) | same-time VAE: batches, AIS" if args.time_matched else ""
    print(f"| algorithm | z | batches | plug-in ELBO estimate | AIS log p(x) ± std | AIS − VAE's (paired ± s.e.){same_time} | IWAE bound | "
          "HMC acceptance | training time (s) | images/s |")
    print("|---|---|---|---|---|---|" + ("---|---|" if args.time_matched else "") + "---|---|---|---|")
    for (name, latent_dim), r in zip(rows, results):
        if "failed" in r:
            print(f"| {name} | {latent_dim} | — | — | diverged: {r['failed']} |" + " — |" * (7 if args.time_matched else 5), flush=True)
            continue
        elbo = f"{r['elbo']:.2f}" if r["elbo"] is not None else "—"
        iwae = f"{r['iwae']:.2f}" if "iwae" in r else "—"
        vae = next((v for (n, z), v in zip(rows, results) if n == "VAE" and z == latent_dim), None)
        twin = matched.get((name, latent_dim))
        twin_cells = (f" | {paired_difference(r, twin)} | {twin['batches']}, {twin['ais']:.2f}" if twin else " | — | —") if args.time_matched else ""
        print(
            f"| {name} | {latent_dim} | {r['batches']} | {elbo} | {r['ais']:.2f} ± {r['ais_std']:.2f} | {paired_difference(r, vae)}{twin_cells} | {iwae} | "
            f"{r['acceptance']:.2f} | {r['train_seconds']:.0f} | {r['images_per_second']:.0f} |",
            flush=True,
        )
    print("\nReference points (published, not measured here):\n")
    print("| model | ELBO | AIS / test log-likelihood |")
    print("|---|---|---|")
    for row in REFERENCES:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
