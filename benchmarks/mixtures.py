"""Learning the 2-D mixtures (ring of 8, grid of 25) with the VEEGAN/PacGAN protocol.

Each row trains one implicit model (an ``N(0, I)`` prior and an ``ImplicitLikelihood``, 256-unit
MLPs, batch 256, Adam lr 1e-3, betas (0.5, 0.999), one discriminator step per model step) and
scores 2,500 of its samples with :func:`ivi_lightning.evaluation.modes.mode_coverage`: modes
covered (a sample within 3 std), high-quality samples (within 3 std of the nearest mode), and the
KL of the histogram over modes to the uniform; at the end also the modes *well covered*, holding
at least a quarter of their fair share of the samples (25 of 2,500 on the grid), which a stray
sample or two does not fake. Variants (``--variants``):

* ``ali``: ``JCAdv(loss="ali")``, as in ``configs/jc_adv/{ring,grid}_ali.yaml``;
* ``rmd K=k``: ``JCAdvRMD(unroll_steps=k)``, as in ``configs/jc_adv_rmd/{ring,grid}.yaml`` at ``k=1``;
* then any of: ``m=4``: the joint discriminator sees 4 joints at once (PacGAN's packing,
  ``packing=4``); ``aux=k``: ``k`` discriminator steps per model step; ``alr=…``/``lr=…``: the
  discriminator's / model's learning rate; ``nd=k``: the generator's noise inputs; ``nc=k``: its
  noise is a mixture of ``k`` components (``ImplicitLikelihood(noise_components=k)``); ``act=…``:
  the generator's activation (``relu``; default ``silu``); ``scale=s``: its output is multiplied by
  ``s`` (``output_scale=s``); ``xn=σ xns=n``: instance noise of std ``σ`` on the ``x`` of both
  joints, falling to 0 over ``n`` optimizer steps (``data_instance_noise=σ,
  instance_noise_steps=n``), with ``geo``: falling geometrically to ``σ/100`` at step ``n`` and
  held there (``instance_noise_schedule="geometric"``); ``r1=γ``: R1's gradient penalty of weight ``γ``
  on the discriminator at the data's joints (``r1_penalty=γ``); ``mo``: the joint discriminator is
  PacGAN's, ``Discriminator(hidden=(200, 200, 200), maxout_pieces=5)`` (``MAXOUT_HIDDEN``,
  ``MAXOUT_PIECES``), built after the model so every other network starts as without it;
  ``bs=b``: batch size ``b``; ``ema``: the weights scored are an exponential moving average
  (decay ``EMA_DECAY`` per model update) of the trained ones, Lightning's ``EMAWeightAveraging``;
  ``decay``: every learning rate decays linearly to 0 over the run; ``decay=n``: over ``n`` optimizer
  steps, whatever ``--steps`` is.

One CPU thread; ``--steps`` counts optimizer steps (``aux + 1`` per model update); each seed seeds
the data, the networks and the training. The final scores are taken after ``fit`` (with ``ema``,
of the averaged weights); those along the way (``--every``) of the current weights. With
``--oversampling k …`` the final model is also scored on ``JCAdv.sample_model_resampled(2500, k)``:
``k · 2,500`` model samples resampled by the discriminator's ratio (one summary row per ``k``);
with ``--resample-along`` also every ``--every`` steps (drawn on a forked random stream, so the
training and the plain scores are those of a run without it); with ``--redraws n``, ``n`` independent
draws of the final model at each factor (one row each; the summary pools the draws of all seeds).

    OMP_NUM_THREADS=1 python benchmarks/mixtures.py --datasets ring grid --variants ali "ali m=4" --seeds 0 1 2 3 4
"""

from __future__ import annotations

import argparse
import logging
import statistics
import time
import warnings
from typing import Dict, List, Optional, Sequence

import pytorch_lightning as pl
import torch

import ivi_lightning as ivi
from datamodules import Toy2DDataModule
from ivi_lightning.callbacks import LinearLRDecay
from ivi_lightning.evaluation.modes import PROTOCOL_SAMPLES, mixture_modes, mode_coverage

warnings.filterwarnings("ignore")
logging.getLogger("pytorch_lightning").setLevel(logging.ERROR)
COMMON = dict(latent_dim=2, data_shape=2, hidden=(256, 256), aux_steps=1)
EMA_DECAY = 0.999
#: PacGAN's joint discriminator for the grid: three maxout layers of 200 units, 5 pieces each.
MAXOUT_HIDDEN, MAXOUT_PIECES = (200, 200, 200), 5


def variant_options(variant: str) -> Dict[str, str]:
    """The ``key=value`` words of ``variant``, e.g. ``{"nc": "100", "bs": "512"}``."""
    return dict(word.split("=") for word in variant.split()[1:] if "=" in word)


def build(variant: str) -> ivi.ImplicitVI:
    """The model of ``variant``: ``"ali"`` or ``"rmd K=<k>"``, then optional words ``m=<packing>``,
    ``aux=<discriminator steps per model step>``, ``alr=<discriminator lr>``, ``lr=<model lr>``,
    ``nd=<generator noise inputs>``, ``nc=<generator noise components>``, ``act=<generator activation>``,
    ``scale=<generator output scale>``, ``xn=<instance noise on x> xns=<its steps>``, ``geo``, ``r1=<R1 weight>``, ``mo``
    (and ``bs``, ``ema``,
    ``decay``: see :func:`run`)."""
    words, options = variant.split(), variant_options(variant)
    common = {**COMMON, "aux_steps": int(options.get("aux", 1)), "aux_lr": float(options.get("alr", 1e-3)),
              "lr": float(options.get("lr", 1e-3)), "packing": int(options.get("m", 1))}
    noise = int(options.get("nd", 4))
    if words[0] == "ali":
        generator = ivi.ImplicitLikelihood(2, 2, noise, (256, 256), int(options.get("nc", 1)), options.get("act", "silu"),
                                           float(options.get("scale", 1.0)))
        schedule = "geometric" if "geo" in words else "linear"
        model = ivi.JCAdv(**common, loss="ali", likelihood=generator, data_instance_noise=float(options.get("xn", 0.0)),
                          instance_noise_steps=int(options.get("xns", 0)), instance_noise_schedule=schedule,
                          r1_penalty=float(options.get("r1", 0.0)))
        if "mo" in words:  # built after the model, so every other network starts as without it
            model.discriminator = ivi.nets.Discriminator(2, 2, MAXOUT_HIDDEN, maxout_pieces=MAXOUT_PIECES)
        return model
    if words[0] == "rmd":
        return ivi.JCAdvRMD(**common, unroll_steps=int(options.get("K", 1)), model_noise_dim=noise)
    raise ValueError(f"unknown variant {variant!r}")


class Score(pl.Callback):
    """Scores ``PROTOCOL_SAMPLES`` model samples every ``every`` optimizer steps (and at the end)."""

    def __init__(self, dataset: str, every: int, resample_along: Sequence[int] = ()) -> None:
        self.modes, self.std = mixture_modes(dataset)
        self.every, self.curve = every, []  # type: ignore[var-annotated]
        self.resampled_curve: Dict[int, List] = {k: [] for k in resample_along}

    @torch.no_grad()
    def score(self, trainer: pl.Trainer, model: ivi.ImplicitVI) -> None:
        x, _ = model.sample_model(PROTOCOL_SAMPLES)
        self.curve.append((trainer.global_step, mode_coverage(x, self.modes, self.std)))

    @torch.no_grad()
    def score_resampled(self, model: ivi.ImplicitVI, oversampling: int) -> Dict:
        """The protocol's scores of ``model.sample_model_resampled(PROTOCOL_SAMPLES, oversampling)``."""
        x, _ = model.sample_model_resampled(PROTOCOL_SAMPLES, oversampling)
        return mode_coverage(x, self.modes, self.std)

    def on_train_batch_end(self, trainer: pl.Trainer, model: ivi.ImplicitVI, *args) -> None:
        if trainer.global_step % self.every == 0 and trainer.global_step < trainer.max_steps:
            self.score(trainer, model)
            with torch.random.fork_rng():  # leaves the training's random stream as it was
                for k, curve in self.resampled_curve.items():
                    curve.append((trainer.global_step, self.score_resampled(model, k)))


def run(dataset: str, variant: str, seed: int, steps: int, every: int, oversampling: Sequence[int] = (),
        resample_along: bool = False, redraws: int = 1) -> Dict:
    """Train ``variant`` on ``dataset`` with ``seed`` for ``steps`` optimizer steps; score the final
    model's samples, and ``redraws`` draws of its resampled samples at each factor in ``oversampling``."""
    pl.seed_everything(seed, verbose=False)
    options = variant_options(variant)
    batch_size = int(options.get("bs", 256))
    data = Toy2DDataModule(dataset, num_samples=20000, batch_size=batch_size, seed=seed)
    model = build(variant)
    score = Score(dataset, every, oversampling if resample_along else ())
    callbacks: List[pl.Callback] = [score]
    if "ema" in variant.split():  # Lightning's EMA of the weights, swapped in when training ends
        callbacks.append(pl.callbacks.EMAWeightAveraging(decay=EMA_DECAY))
    if "decay" in variant.split() or "decay" in options:
        callbacks.append(LinearLRDecay(steps=int(options["decay"]) if "decay" in options else None))
    trainer = pl.Trainer(max_steps=steps, accelerator="cpu", logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
                         callbacks=callbacks)
    start = time.perf_counter()
    trainer.fit(model, data)
    score.score(trainer, model)  # after fit: with EMA, its averaged weights
    seconds = time.perf_counter() - start
    # after the plain score, so the plain rows do not depend on --oversampling
    resampled = {k: [score.score_resampled(model, k) for _ in range(redraws)] for k in oversampling}
    return {"dataset": dataset, "variant": variant, "seed": seed, "curve": score.curve, "resampled": resampled,
            "resampled_curve": score.resampled_curve, "seconds": seconds}


def summary(rows: List[Dict], total: int, oversampling: Optional[int] = None) -> str:
    """``mean ± std`` over seeds of the final scores (over seeds and draws of the samples resampled at
    ``oversampling``, if given), and how many of them covered every mode."""
    finals = ([row["curve"][-1][1] for row in rows] if oversampling is None
              else [draw for row in rows for draw in row["resampled"][oversampling]])
    variant = rows[0]["variant"] + ("" if oversampling is None else f", resampled ×{oversampling}")
    cell = lambda key, f: f"{f(statistics.mean(m[key] for m in finals))} ± {f(statistics.pstdev(m[key] for m in finals))}"
    seeds, every = f"{len(rows)}", f"{sum(m['modes'] == total for m in finals)}/{len(finals)}"
    if len(finals) > len(rows):  # several draws per seed: also the seeds all of whose draws have every mode
        every_seed = sum(all(m["modes"] == total for m in row["resampled"][oversampling]) for row in rows)
        seeds, every = f"{seeds} ({len(finals)} draws)", f"{every} draws, {every_seed}/{len(rows)} seeds"
    return (f"| {rows[0]['dataset']} ({total}) | {variant} | {seeds} | {cell('modes', lambda v: f'{v:.1f}')} | "
            f"{every} | {cell('well_covered', lambda v: f'{v:.1f}')} | {cell('high_quality', lambda v: f'{100 * v:.1f}%')} | {cell('kl_to_uniform', lambda v: f'{v:.3f}')} | "
            f"{statistics.mean(r['seconds'] for r in rows):.0f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", nargs="+", default=["ring", "grid"], choices=["ring", "grid"])
    parser.add_argument("--variants", nargs="+", default=["ali", "ali m=4"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    parser.add_argument("--steps", type=int, default=12000, help="optimizer steps per run (two per model update)")
    parser.add_argument("--every", type=int, default=3000, help="also score every this many optimizer steps")
    parser.add_argument("--oversampling", nargs="*", type=int, default=[],
                        help="also score the final model's samples resampled by the discriminator at these factors")
    parser.add_argument("--resample-along", action="store_true",
                        help="score the resampled samples every --every steps too (training unchanged)")
    parser.add_argument("--redraws", type=int, default=1,
                        help="independent resampled draws of the final model per --oversampling factor")
    args = parser.parse_args()
    if args.redraws < 1:
        parser.error(f"--redraws {args.redraws}: the number of resampled draws per factor is a whole number >= 1")
    torch.set_num_threads(1)
    results = []
    print("| data | variant | seed | modes covered, high-quality at optimizer step | well covered | high-quality | KL to uniform | train s |")
    print("|---|---|---|---|---|---|---|---|")
    for dataset in args.datasets:
        for variant in args.variants:
            for seed in args.seeds:
                row = run(dataset, variant, seed, args.steps, args.every, args.oversampling, args.resample_along, args.redraws)
                results.append(row)
                curve = ", ".join(f"{step}: {int(m['modes'])}, {m['high_quality']:.0%}" for step, m in row["curve"])
                last = row["curve"][-1][1]
                print(f"| {dataset} | {variant} | {seed} | {curve} | {int(last['well_covered'])} | {last['high_quality']:.1%} | {last['kl_to_uniform']:.3f} | {row['seconds']:.0f} |", flush=True)
                for k, draws in row["resampled"].items():
                    along = "".join(f"{step}: {int(a['modes'])}, {a['high_quality']:.0%}, "
                                    for step, a in row["resampled_curve"].get(k, []))
                    for m in draws:
                        print(f"| {dataset} | {variant}, resampled ×{k} | {seed} | {along}end: {int(m['modes'])}, {m['high_quality']:.0%} | {int(m['well_covered'])} | {m['high_quality']:.1%} | {m['kl_to_uniform']:.3f} | |", flush=True)
    print(f"\n{args.steps} optimizer steps; mean ± std over seeds of the final scores ({PROTOCOL_SAMPLES} samples)\n")
    print("| data | variant | seeds | modes covered | seeds (draws) with every mode | modes well covered | high-quality samples | KL to uniform | train s |")
    print("|---|---|---|---|---|---|---|---|---|")
    for dataset in args.datasets:
        for variant in args.variants:
            rows = [r for r in results if r["dataset"] == dataset and r["variant"] == variant]
            for oversampling in [None, *args.oversampling]:
                print(summary(rows, len(mixture_modes(dataset)[0]), oversampling))


if __name__ == "__main__":
    main()
