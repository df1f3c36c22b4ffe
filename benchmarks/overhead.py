"""Overhead of the LightningModule + Trainer against the plain PyTorch loop a user would write.

For each algorithm and profile, the *same* networks (taken from an instantiated algorithm), the
same pure estimator functions, batch size and update schedule (``aux_steps`` auxiliary updates,
then one encoder update) run

* ``plain``: a hand-written loop over in-memory tensors indexed by a fresh random permutation
  per epoch, ``zero_grad(set_to_none=True)`` / ``backward`` / ``step``, metrics read with
  ``.item()`` every ``log_every_n_steps`` iterations (what a user prints or writes), in the
  environment of a process that never imported Lightning (``PYTORCH_NVML_BASED_CUDA_CHECK``
  as it was before the import: with it set, a CUDA build of torch on a GPU-less machine probes
  NVML in every Adam step, ~0.1 ms, which a plain script does not pay);
* ``lean``: ``Trainer(logger=TensorBoardLogger, enable_progress_bar=False)`` with the data module;
* ``defaults``: the same with the progress bar on (Lightning's default);
* with ``--updates-per-batch K``: ``lean`` loading K update batches at once and running the K
  update schedules on them (``updates_per_batch=K``): the same training, Lightning's per-batch
  cost paid once per K schedules;
* with ``--bare``: the same as the K-updates column (K = 1 without ``--updates-per-batch``) with
  ivi's own per-step work taken out (its callbacks and its non-finite check: each update is
  ``manual_backward`` then ``optimizer.step()``): what the Trainer and Lightning's public update
  path cost by themselves;
* with ``--step-costs``: the fixed costs of one optimizer step, in µs, each the fastest of many
  blocks (steadier than rates on a shared machine, though not immune to it): Lightning's manual update path
  (``manual_backward`` and ``LightningOptimizer.step``, with their hooks) over ``loss.backward()``
  and ``optimizer.step()`` on a 10-parameter network inside ``Trainer.fit``; the CUDA
  availability check every torch optimizer step makes, as Lightning's import leaves it and as a
  process that never imported Lightning has it; ivi's non-finite check on a toy network's gradients;
* with ``--cuda-probe-ab``: ``lean`` again with ``PYTORCH_NVML_BASED_CUDA_CHECK`` as the plain
  loop has it, to separate what importing Lightning costs every optimizer step on a GPU-less
  machine with a CUDA build of torch (Lightning sets the variable; ivi leaves it alone) from the
  cost of the Trainer and the algorithm classes.

Timings are iterations (one encoder update each) per second after warm-up, measured
interleaved (plain, lean, defaults, plain, ...), one thread per side. Rates are per second of
*process CPU time* (all threads of the process, so a logger's writer thread counts): on a
machine shared with other jobs, wall time mostly measures the neighbours; ``--wall`` reports
wall-clock rates instead. The ratio columns are medians over rounds of ours / plain.

Usage::

    OMP_NUM_THREADS=1 python benchmarks/overhead.py                 # toy and mnist, every algorithm
    OMP_NUM_THREADS=1 python benchmarks/overhead.py --profiles toy --algorithms PCAdv --rounds 3
    # + lean in the plain loop's environment:
    OMP_NUM_THREADS=1 python benchmarks/overhead.py --profiles toy --cuda-probe-ab
    # + lean, 8 updates per loaded batch:
    OMP_NUM_THREADS=1 python benchmarks/overhead.py --profiles toy --updates-per-batch 8
    # + the same without ivi's per-step work (callbacks, non-finite check):
    OMP_NUM_THREADS=1 python benchmarks/overhead.py --profiles toy --updates-per-batch 8 --bare
    # the fixed costs of one optimizer step only:
    OMP_NUM_THREADS=1 python benchmarks/overhead.py --step-costs --profiles
"""

from __future__ import annotations

import argparse
import contextlib
import io
import logging
import math
import os
import platform
import statistics
import sys
import tempfile
import time
import warnings
from typing import Callable, Dict, List, Optional, Tuple

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# Importing Lightning sets this for the whole process; the plain loop runs with the value a
# process that never imported Lightning has.
CUDA_PROBE_ENV = "PYTORCH_NVML_BASED_CUDA_CHECK"
PLAIN_CUDA_PROBE = os.environ.get(CUDA_PROBE_ENV)

import pytorch_lightning as pl
import torch
from pytorch_lightning.loggers import TensorBoardLogger
from torch import Tensor

from datamodules import MNISTDataModule, Toy2DDataModule
from ivi_lightning import JCAdv, JCDen, PCAdv, PCDen, VAE
from ivi_lightning.distributions import has_log_prob
from ivi_lightning.training.nonfinite import all_finite
from ivi_lightning.estimators import (
    denoiser_score,
    denoising_loss,
    input_gradient,
    ratio_accuracy,
    ratio_loss,
    scaled_denoising_loss,
    score_surrogate,
)

ALGORITHMS = {"VAE": VAE, "PCAdv": PCAdv, "PCDen": PCDen, "JCAdv": JCAdv, "JCDen": JCDen}
LOG_EVERY = 50

#: Per profile: model options per algorithm (as in ``configs/*/{explaining_away,mnist}.yaml``).
TOY_OPTIONS = {
    "VAE": {},
    "PCAdv": {},
    "PCDen": {},
    "JCAdv": {"hidden": (64, 64)},
    "JCDen": {"hidden": (64, 64), "model_score": "denoiser", "data_noise_std": 0.01},
}
MNIST_COMMON = dict(latent_dim=8, architecture="conv_small", hidden=(256,), noise_dim=8, lr=3e-4, aux_lr=3e-4)
MNIST_OPTIONS = {
    "VAE": {},
    "PCAdv": {"aux_steps": 1},
    "PCDen": {"aux_steps": 1},
    "JCAdv": {"aux_steps": 1},
    "JCDen": {"aux_steps": 1, "data_noise_std": 0.1},
}


def make_data(profile: str, data_dir: str, updates_per_batch: int = 1) -> pl.LightningDataModule:
    """The profile's data module, set up (MNIST falls back to random binary images if missing).

    With ``updates_per_batch`` K, its batches hold K update batches.
    """
    if profile == "toy":
        dm = Toy2DDataModule("explaining_away", num_samples=20000, batch_size=256 * updates_per_batch)
    else:
        dm = MNISTDataModule(data_dir=data_dir, batch_size=128 * updates_per_batch)
        try:
            dm.setup("fit")
        except FileNotFoundError:
            print(
                f"# MNIST not found under {data_dir}: using random binary images of MNIST's shape",
                file=sys.stderr,
            )
            dm = _random_mnist(dm)
    dm.setup("fit")
    return dm


def _random_mnist(dm: MNISTDataModule) -> MNISTDataModule:
    """Fill ``dm`` with 55,000 random binary uint8 images (same shape and dtype path as MNIST)."""
    from datamodules.mnist import _PixelBatches

    generator = torch.Generator().manual_seed(0)
    images = (torch.rand(55000, 1, 28, 28, generator=generator) * 255).to(torch.uint8)
    labels = torch.randint(10, (55000,), generator=generator)
    dm.train_set = _PixelBatches(images, labels, "dynamic")
    dm.val_set = _PixelBatches(images[:1000], labels[:1000], "none")
    return dm


def make_model(name: str, profile: str, dm: pl.LightningDataModule) -> pl.LightningModule:
    if profile == "toy":
        return ALGORITHMS[name](
            latent_dim=2,
            data_shape=dm.data_shape,
            learn_model=False,
            prior=dm.prior,
            likelihood=dm.likelihood,
            **TOY_OPTIONS[name],
        )
    return ALGORITHMS[name](data_shape=dm.data_shape, **MNIST_COMMON, **MNIST_OPTIONS[name])


# --- the hand-written loops ---------------------------------------------------------------------
def plain_step_fn(
    model: pl.LightningModule,
) -> Tuple[Callable[[Tensor], Dict[str, Tensor]], List[torch.optim.Optimizer]]:
    """``(step(x) -> metrics, optimizers)``: one iteration of ``model``'s update, in plain PyTorch.

    Uses ``model``'s networks and the estimator functions directly; no Lightning call is made.
    """
    enc, prior, lik, h = model.encoder, model.prior, model.likelihood, model.hparams
    opts = model.configure_optimizers()
    opts = list(opts) if isinstance(opts, (tuple, list)) else [opts]

    def update(opt: torch.optim.Optimizer, loss: Tensor) -> None:
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    if isinstance(model, VAE):

        def step(x: Tensor) -> Dict[str, Tensor]:
            mean, std = enc.moments(x)
            z = mean + std * torch.randn_like(std)
            log_q = (
                -0.5 * ((z - mean) / std).pow(2).sum(-1)
                - 0.5 * z.shape[-1] * 1.8378770664093453
                - std.log().sum(-1)
            )
            elbo = (lik.log_prob(x, z) + prior.log_prob(z) - log_q).mean()
            update(opts[0], -elbo)
            return {"elbo": elbo, "loss_encoder": -elbo}
    elif isinstance(model, PCAdv):
        disc = model.discriminator
        logit = lambda x, z: disc(x, z) - prior.log_prob(z)

        def step(x: Tensor) -> Dict[str, Tensor]:
            for _ in range(h.aux_steps):
                with torch.no_grad():
                    z_q = enc(x)
                t_q, t_p = logit(x, z_q), logit(x, prior.sample(x.shape[0]))
                loss_disc = ratio_loss(t_q, t_p)
                update(opts[1], loss_disc)
            z = enc(x)
            elbo = (lik.log_prob(x, z) - logit(x, z)).mean()
            update(opts[0], -elbo)
            return {
                "loss_discriminator": loss_disc,
                "discriminator_accuracy": ratio_accuracy(t_q, t_p),
                "elbo": elbo,
                "loss_encoder": -elbo,
            }
    elif isinstance(model, PCDen):
        den, sigma = model.denoiser, h.noise_std

        def step(x: Tensor) -> Dict[str, Tensor]:
            for _ in range(h.aux_steps):
                with torch.no_grad():
                    z = enc(x)
                loss_den = denoising_loss(den(z + sigma * torch.randn_like(z), x), z)
                update(opts[1], loss_den)
            z = enc(x)
            z = z + sigma * torch.randn_like(z)
            log_joint = lik.log_prob(x, z) + prior.log_prob(z)
            with torch.no_grad():
                score = denoiser_score(den(z, x), z, sigma)
            loss = (score_surrogate(z, score) - log_joint).mean()
            update(opts[0], loss)
            return {
                "loss_denoiser": loss_den,
                "denoiser_error": loss_den / (sigma**2 * model.latent_dim),
                "log_joint": log_joint.mean(),
                "loss_encoder": loss,
            }
    elif isinstance(model, JCAdv):
        disc, learn = model.discriminator, h.learn_model

        def step(x: Tensor) -> Dict[str, Tensor]:
            for _ in range(h.aux_steps):
                with torch.no_grad():
                    z_q = enc(x)
                    z_p = prior.sample(x.shape[0])
                    x_p = lik.sample(z_p)
                t_q, t_p = disc(x, z_q), disc(x_p, z_p)
                loss_disc = ratio_loss(t_q, t_p)
                update(opts[1], loss_disc)
            z = enc(x)
            loss_encoder = disc(x, z).mean()
            loss_model = (
                -(lik.log_prob(x, z.detach()) + prior.log_prob(z.detach())).mean()
                if learn
                else torch.zeros(())
            )
            update(opts[0], loss_encoder + loss_model)
            return {
                "loss_discriminator": loss_disc,
                "discriminator_accuracy": ratio_accuracy(t_q, t_p),
                "kl_estimate": loss_encoder,
                "loss_encoder": loss_encoder,
                "loss_model": loss_model,
            }
    elif isinstance(model, JCDen):
        den, model_den, sx, sz, learn = (
            model.denoiser,
            model.model_denoiser,
            model.data_noise_std,
            model.noise_std,
            h.learn_model,
        )
        use_model_den = (
            not (has_log_prob(prior) and has_log_prob(lik))
            if h.model_score == "auto"
            else h.model_score == "denoiser"
        )

        def jd_loss(net, x, z):
            x_hat, z_hat = net(x + sx * torch.randn_like(x), z + sz * torch.randn_like(z))
            return scaled_denoising_loss(x_hat, x, sx) + scaled_denoising_loss(z_hat, z, sz)

        def step(x: Tensor) -> Dict[str, Tensor]:
            for _ in range(h.aux_steps):
                with torch.no_grad():
                    z = enc(x)
                    if use_model_den:
                        z_p = prior.sample(x.shape[0])
                        joint = (lik.sample(z_p), z_p)
                loss_den = jd_loss(den, x, z)
                if use_model_den:
                    loss_den = loss_den + jd_loss(model_den, *joint)
                update(opts[1], loss_den)
            z = enc(x)
            zd = z.detach()
            with torch.no_grad():
                score_q = denoiser_score(den(x, zd)[1], zd, sz)
                score_p = denoiser_score(model_den(x, zd)[1], zd, sz) if use_model_den else None
            if score_p is None:
                score_p = input_gradient(lambda zz: lik.log_prob(x, zz) + prior.log_prob(zz), zd)
            loss_encoder = score_surrogate(z, score_q - score_p).mean()
            loss_model = -(lik.log_prob(x, zd) + prior.log_prob(zd)).mean() if learn else torch.zeros(())
            update(opts[0], loss_encoder + loss_model)
            return {"loss_denoiser": loss_den, "loss_encoder": loss_encoder, "loss_model": loss_model}
    else:
        raise ValueError(f"no plain loop for {type(model).__name__}")
    return step, opts


def batch_x(dm: pl.LightningDataModule, indices: Tensor) -> Tensor:
    """A training batch gathered the way a hand-written loop would: tensor indexing in memory."""
    out = dm.train_set[indices]
    return out[0]


def _clock() -> Tuple[float, float]:
    return time.perf_counter(), time.process_time()


def _rates(iters: int, t0: Tuple[float, float], t1: Tuple[float, float]) -> Tuple[float, float]:
    """``(wall, cpu)`` iterations per second between two :func:`_clock` readings."""
    return iters / (t1[0] - t0[0]), iters / max(t1[1] - t0[1], 1e-9)


def time_plain(
    model: pl.LightningModule, dm: pl.LightningDataModule, warmup: int, iters: int
) -> Tuple[float, float]:
    """``(wall, cpu)`` iterations per second of the plain loop, after ``warmup`` iterations."""
    with _plain_process_environment():
        return _time_plain(model, dm, warmup, iters)


@contextlib.contextmanager
def _plain_process_environment():
    """The environment of a user's script that never imported Lightning (see ``CUDA_PROBE_ENV``)."""
    saved = os.environ.get(CUDA_PROBE_ENV)
    _set_env(CUDA_PROBE_ENV, PLAIN_CUDA_PROBE)
    try:
        yield
    finally:
        _set_env(CUDA_PROBE_ENV, saved)


def _set_env(key: str, value: Optional[str]) -> None:
    if value is None:
        os.environ.pop(key, None)
    else:
        os.environ[key] = value


def _time_plain(
    model: pl.LightningModule, dm: pl.LightningDataModule, warmup: int, iters: int
) -> Tuple[float, float]:
    step, _ = plain_step_fn(model)
    n, bs, logged = len(dm.train_set), dm.batch_size, []
    done, t0 = 0, None
    model.train()
    while done < warmup + iters:
        perm = torch.randperm(n)
        for start in range(0, n - bs + 1, bs):
            if done == warmup:
                t0 = _clock()
            metrics = step(batch_x(dm, perm[start : start + bs]))
            done += 1
            if done % LOG_EVERY == 0:
                logged.append({k: v.item() for k, v in metrics.items()})
            if done == warmup + iters:
                break
    return _rates(iters, t0, _clock())


class _Timer(pl.Callback):
    """Wall time from the start of batch ``warmup`` to the end of the last batch."""

    def __init__(self, warmup: int, iters: int) -> None:
        self.warmup, self.iters, self.t0, self.t1, self.count = warmup, iters, None, None, 0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if self.count == self.warmup:
            self.t0 = _clock()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.count += 1
        if self.count == self.warmup + self.iters:
            self.t1 = _clock()
            trainer.should_stop = True


def time_lightning(
    model: pl.LightningModule,
    dm: pl.LightningDataModule,
    warmup: int,
    iters: int,
    progress_bar: bool,
    root: str,
    updates_per_batch: int = 1,
    plain_environment: bool = False,
) -> Tuple[float, float]:
    """``(wall, cpu)`` iterations per second of ``Trainer.fit`` (TensorBoard logger), after ``warmup``
    iterations.

    ``updates_per_batch`` K: ``dm``'s batches hold K update batches, and the model runs K
    iterations on each. ``plain_environment``: run in the plain loop's environment (see ``CUDA_PROBE_ENV``).
    """
    with _plain_process_environment() if plain_environment else contextlib.nullcontext():
        model.hparams.updates_per_batch = updates_per_batch
        k = updates_per_batch
        timer = _Timer(-(-warmup // k), -(-iters // k))
        trainer = pl.Trainer(
            max_epochs=-1,
            accelerator="cpu",
            devices=1,
            logger=TensorBoardLogger(root, name="overhead"),
            enable_checkpointing=False,
            enable_progress_bar=progress_bar,
            enable_model_summary=False,
            limit_val_batches=0,
            num_sanity_val_steps=0,
            log_every_n_steps=LOG_EVERY,
            callbacks=[timer],
            default_root_dir=root,
        )
        sink = io.StringIO()
        # The progress bar is drawn (its cost counts) but not shown.
        try:
            with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
                trainer.fit(model, dm)
        finally:
            model.hparams.updates_per_batch = 1
        return _rates(timer.iters * k, timer.t0, timer.t1)


@contextlib.contextmanager
def without_ivi_step_work(model: pl.LightningModule):
    """``model`` updating through Lightning's public manual path alone (``manual_backward``, then
    ``optimizer.step()``), without ivi's callbacks and non-finite check (the ``--bare`` column)."""

    def bare_optimize(optimizer, loss: Tensor, name: Optional[str] = None) -> bool:
        optimizer.zero_grad(set_to_none=True)
        model.manual_backward(loss)
        optimizer.step()
        return True

    model.optimize, model.configure_callbacks = bare_optimize, lambda: []
    try:
        yield
    finally:
        del model.optimize, model.configure_callbacks


# --- fixed costs of one optimizer step -----------------------------------------------------------
def fastest_us(fn: Callable[[], object], number: int = 200, blocks: int = 30) -> float:
    """µs per call of ``fn``: the fastest of ``blocks`` blocks of ``number`` calls."""
    best = math.inf
    for _ in range(blocks):
        t = time.perf_counter()
        for _ in range(number):
            fn()
        best = min(best, (time.perf_counter() - t) / number)
    return 1e6 * best


class _UpdatePath(pl.LightningModule):
    """Times, inside ``Trainer.fit``, one update of a 10-parameter network through Lightning's manual
    optimization API and through plain torch calls."""

    def __init__(self) -> None:
        super().__init__()
        self.automatic_optimization = False
        self.weight = torch.nn.Parameter(torch.zeros(10))
        self.us: Dict[str, float] = {}

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD([self.weight], lr=0.0)

    def training_step(self, batch: Tensor, batch_idx: int) -> None:
        wrapped = self.optimizers()
        raw = wrapped.optimizer

        def lightning() -> None:
            wrapped.zero_grad(set_to_none=True)
            self.manual_backward(self.weight.sum())
            wrapped.step()

        def plain() -> None:
            raw.zero_grad(set_to_none=True)
            self.weight.sum().backward()
            raw.step()

        self.us = {"lightning": fastest_us(lightning), "plain": fastest_us(plain)}


def step_costs() -> Dict[str, float]:
    """µs per optimizer step: Lightning's update path over plain torch, the CUDA availability check
    (as Lightning's import leaves it and as it was before), and ivi's non-finite check."""
    module = _UpdatePath()
    trainer = pl.Trainer(max_epochs=1, limit_train_batches=1, accelerator="cpu", logger=False,
                         enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        trainer.fit(module, torch.utils.data.DataLoader(torch.zeros(2, 1)))
    probe = {"lightning_env": fastest_us(torch.cuda.is_available)}
    with _plain_process_environment():
        probe["plain_env"] = fastest_us(torch.cuda.is_available)
    toy = JCAdv(latent_dim=2, data_shape=2, hidden=(64, 64))
    gradients = [torch.randn_like(p) for p in toy.discriminator.parameters()]
    return {
        "lightning_update_path": module.us["lightning"] - module.us["plain"],
        "cuda_check_lightning_env": probe["lightning_env"],
        "cuda_check_plain_env": probe["plain_env"],
        "nonfinite_check": fastest_us(lambda: all_finite(gradients)),
    }


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profiles", nargs="*", default=["toy", "mnist"], choices=["toy", "mnist"])
    parser.add_argument("--algorithms", nargs="+", default=list(ALGORITHMS), choices=list(ALGORITHMS))
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds per variant")
    parser.add_argument("--seconds", type=float, default=1.0, help="rough timed seconds per measurement")
    parser.add_argument(
        "--data_dir",
        default=os.environ.get(
            "MNIST_DIR", "/work/shared/data" if os.path.isdir("/work/shared/data") else "data"
        ),
    )
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--wall", action="store_true", help="report wall-clock rates instead of CPU-time rates"
    )
    parser.add_argument(
        "--cuda-probe-ab",
        action="store_true",
        help="also time lean in the plain loop's environment (see CUDA_PROBE_ENV)",
    )
    parser.add_argument(
        "--updates-per-batch",
        type=int,
        default=1,
        metavar="K",
        help="also time lean with K update batches per loaded batch (K > 1)",
    )
    parser.add_argument(
        "--bare",
        action="store_true",
        help="also time the K-updates run without ivi's callbacks and non-finite check",
    )
    parser.add_argument(
        "--step-costs", action="store_true", help="also print the fixed costs of one optimizer step (µs)"
    )
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")
    logging.getLogger("pytorch_lightning").setLevel(logging.ERROR)
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    print(
        f"# machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"torch {torch.__version__}, "
        f"lightning {pl.__version__}, threads {torch.get_num_threads()}, log_every_n_steps {LOG_EVERY}, "
        f"rates per {'wall' if args.wall else 'CPU'} second"
    )
    if args.step_costs:
        costs = step_costs()
        print("| fixed cost of one optimizer step | µs |\n|---|---|")
        for name, us in costs.items():
            print(f"| {name} | {us:.1f} |")
    if not args.profiles:
        return
    ab, per_batch, bare = args.cuda_probe_ab, args.updates_per_batch, args.bare
    extra = (
        ([" lean, plain loop's environment / plain |"] if ab else [])
        + ([f" lean, {per_batch} updates per batch / plain |"] if per_batch > 1 else [])
        + ([" the same without ivi's per-step work / plain |"] if bare else [])
    )
    print(
        "| profile | algorithm | plain it/s | lean it/s | defaults it/s | lean / plain | defaults / plain |"
        + "".join(extra)
    )
    print("|---|---|---|---|---|---|---|" + "---|" * len(extra))
    with tempfile.TemporaryDirectory() as root:
        for profile in args.profiles:
            dm = make_data(profile, args.data_dir)
            dm_chunked = make_data(profile, args.data_dir, per_batch) if per_batch > 1 else dm
            for name in args.algorithms:
                torch.manual_seed(0)
                model = make_model(name, profile, dm)
                # Calibrate: iterations that take about `seconds` on the plain loop.
                rate = time_plain(model, dm, warmup=3, iters=5)[1]
                iters, warmup = max(10, int(args.seconds * rate)), max(5, int(0.2 * args.seconds * rate))
                rates: Dict[str, List[float]] = {
                    "plain": [],
                    "lean": [],
                    "defaults": [],
                    "plain_env": [],
                    "chunked": [],
                    "bare": [],
                }
                pick = 0 if args.wall else 1
                for _ in range(args.rounds):
                    rates["plain"].append(time_plain(model, dm, warmup, iters)[pick])
                    rates["lean"].append(time_lightning(model, dm, warmup, iters, False, root)[pick])
                    rates["defaults"].append(time_lightning(model, dm, warmup, iters, True, root)[pick])
                    if ab:
                        rates["plain_env"].append(
                            time_lightning(model, dm, warmup, iters, False, root, plain_environment=True)[
                                pick
                            ]
                        )
                    if per_batch > 1:
                        rates["chunked"].append(
                            time_lightning(
                                model, dm_chunked, warmup, iters, False, root, updates_per_batch=per_batch
                            )[pick]
                        )
                    if bare:
                        with without_ivi_step_work(model):
                            rates["bare"].append(
                                time_lightning(
                                    model, dm_chunked, warmup, iters, False, root, updates_per_batch=per_batch
                                )[pick]
                            )
                ratio = lambda k: statistics.median(a / b for a, b in zip(rates[k], rates["plain"]))
                med = {k: statistics.median(v) for k, v in rates.items() if v}
                print(
                    f"| {profile} | {name} | {med['plain']:.1f} | {med['lean']:.1f} | "
                    f"{med['defaults']:.1f} | "
                    f"{ratio('lean'):.3f} | {ratio('defaults'):.3f} |"
                    + (f" {ratio('plain_env'):.3f} |" if ab else "")
                    + (f" {ratio('chunked'):.3f} |" if per_batch > 1 else "")
                    + (f" {ratio('bare'):.3f} |" if bare else ""),
                    flush=True,
                )


if __name__ == "__main__":
    main()
