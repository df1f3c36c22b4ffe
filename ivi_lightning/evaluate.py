"""Evaluate a trained checkpoint: AIS log-likelihood (and the IWAE bound for a VAE).

``python -m ivi_lightning.evaluate --config configs/vae/mnist.yaml --ckpt_path <ckpt> [--num_temperatures
1000]``

The model and data module are built from the training config (as ``ivi fit`` built them), the
checkpoint's weights are loaded, and one markdown table row per run is printed: mean AIS
``log p(x)`` ± its std over examples (and the standard error of the mean), the IWAE bound
where the encoder is an explicit Gaussian, and the settings used.
"""

from __future__ import annotations

import argparse
import math
import time
import warnings
from typing import Any, Dict, List, Optional, Sequence, cast

import torch
from torch import Tensor

from ivi_lightning.algorithms.known_model import adopt_known_model
from ivi_lightning.checkpoint import read_checkpoint
from ivi_lightning.cli_errors import one_line_errors
from ivi_lightning.data import batch_tensor
from ivi_lightning.evaluation.ais import annealed_importance_sampling, iwae_bound, require_densities

FIT_ONLY_KEYS = ("ckpt_path", "weights_only")


def _without_fit_keys(config: str) -> str:
    """``config``, or its content without the keys only ``ivi fit`` accepts.

    A run's saved ``config.yaml`` (in its log directory) holds the resolved settings of every
    override it was trained with, plus ``ckpt_path`` and ``weights_only``, which belong to the
    ``fit`` subcommand; those are dropped so the saved config can be scored as it is.
    """
    import yaml

    with open(config) as f:
        content = yaml.safe_load(f)
    if not isinstance(content, dict) or not any(key in content for key in FIT_ONLY_KEYS):
        return config
    return yaml.safe_dump(
        {key: value for key, value in content.items() if key not in FIT_ONLY_KEYS}, sort_keys=False
    )


def load_model_and_data(config: str, ckpt_path: str, overrides: Sequence[str] = ()):
    """The algorithm (with the checkpoint's weights, in eval mode) and data module of a training config.

    The checkpoint is read first: the config must build its algorithm, and every hyperparameter the
    config or ``overrides`` set must have the checkpoint's value (those they leave out are taken from
    the checkpoint), so a model is never scored with other networks than it was trained with.

    Args:
        config: the YAML config the model was trained with, or the ``config.yaml`` its run saved.
        ckpt_path: a checkpoint written by the Trainer (``trainer.save_checkpoint`` or ModelCheckpoint).
        overrides: extra CLI arguments for the config, e.g. ``["--data.init_args.data_dir", "data"]``.

    Returns:
        ``(model, datamodule)``.

    Raises:
        CheckpointError: the checkpoint is missing or unreadable, of another algorithm, or trained
            with other values of hyperparameters the config sets (named).
        FileNotFoundError: the config does not exist.
    """
    import os

    import pytorch_lightning as pl

    import datamodules  # noqa: F401  (registers the data modules for class_path resolution)
    from ivi_lightning.algorithms import ImplicitVI
    from ivi_lightning.cli import IVICLI

    if not os.path.isfile(config):
        raise FileNotFoundError(f"config file not found: {config!r}")
    read_checkpoint(ckpt_path)  # a missing or unreadable checkpoint is reported before the config is parsed
    # Build exactly what `ivi fit --config` builds, without running anything or writing logs.
    args = ["--config", _without_fit_keys(config), "--trainer.logger", "false", *overrides]
    with warnings.catch_warnings():  # that both sys.argv (evaluate's own) and args are given is meant
        warnings.filterwarnings("ignore", message="LightningCLI's args parameter")
        cli = IVICLI(
            ImplicitVI,
            pl.LightningDataModule,
            subclass_mode_model=True,
            subclass_mode_data=True,
            args=args,
            run=False,
            checkpoint=ckpt_path,
        )
    model, datamodule, checkpoint = cli.model, cli.datamodule, cli.checkpoint
    # A learn_model=False algorithm adopts its data module's known model at setup: the same here.
    if model.prior is None or model.likelihood is None:
        adopt_known_model(model, datamodule)
    model.load_state_dict(cast(Dict[str, Any], checkpoint)["state_dict"])
    return model.eval(), datamodule


def _loader(datamodule, split: str):
    from pytorch_lightning.utilities.model_helpers import is_overridden

    if split == "test" and not is_overridden("test_dataloader", datamodule):
        split = "val"
    datamodule.setup("test" if split == "test" else "validate")
    return (datamodule.test_dataloader() if split == "test" else datamodule.val_dataloader()), split


@torch.no_grad()
def evaluate(
    model,
    dataloader,
    num_temperatures: int = 1000,
    num_chains: int = 16,
    leapfrog_steps: int = 10,
    max_examples: Optional[int] = 1000,
    iwae_samples: int = 1000,
    schedule: str = "sigmoid",
    device: Optional[str] = None,
    progress: bool = False,
) -> Dict[str, Any]:
    """AIS (and IWAE) log-likelihood of ``model`` on up to ``max_examples`` examples of ``dataloader``.

    Args:
        model: an algorithm with ``prior`` and ``likelihood`` densities.
        dataloader: batches ``x`` or ``(x, ...)``.
        num_temperatures: AIS annealing transitions.
        num_chains: AIS chains per example.
        leapfrog_steps: leapfrog steps per HMC transition.
        max_examples: stop after this many examples (``None``: the whole loader).
        iwae_samples: IWAE importance samples (``0``, or an encoder without ``moments``: skipped).
        schedule: ``"sigmoid"`` or ``"linear"`` temperatures.
        device: where to run (default: CUDA if available, else CPU).
        progress: show AIS progress bars.

    Returns:
        ``{"ais": mean, "ais_std": std over examples, "ais_sem": standard error, "acceptance": ...,
        "iwae": ..., "iwae_std": ..., "examples": n, "seconds": wall time, "ais_per_example": [...]}``.
        The spread of ``log p(x)`` between examples (tens of nats on MNIST) dwarfs differences
        between models; compare two models by their per-example differences on the same examples.
    """
    name = f"AIS (on {type(model).__name__})"
    require_densities(getattr(model, "prior", None), getattr(model, "likelihood", None), name)
    target = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    model = model.to(target).eval()
    with_iwae = iwae_samples > 0 and hasattr(getattr(model, "encoder", None), "moments")
    ais: List[Tensor] = []
    acceptance: List[Tensor] = []
    iwae: List[Tensor] = []
    seen, start = 0, time.perf_counter()
    for batch in dataloader:
        x = batch_tensor(batch)
        if max_examples is not None:
            x = x[: max_examples - seen]
        if x.shape[0] == 0:
            break
        x = model.batch_data(x.to(target)) if hasattr(model, "batch_data") else x.to(target)
        result = annealed_importance_sampling(
            model.prior,
            model.likelihood,
            x,
            num_temperatures=num_temperatures,
            num_chains=num_chains,
            leapfrog_steps=leapfrog_steps,
            schedule=schedule,
            progress=progress,
        )
        ais.append(result.log_marginal.cpu())
        acceptance.append(result.acceptance.cpu())
        if with_iwae:
            iwae.append(iwae_bound(model, x, iwae_samples, chunk_size=100).cpu())
        seen += x.shape[0]
        if max_examples is not None and seen >= max_examples:
            break
    if not ais:
        raise ValueError("the data loader gave no examples to evaluate")
    values = torch.cat(ais).double()
    out = {
        "ais": float(values.mean()),
        "ais_std": float(values.std()) if values.numel() > 1 else 0.0,
        "ais_sem": float(values.std() / math.sqrt(values.numel())) if values.numel() > 1 else 0.0,
        "acceptance": float(torch.cat(acceptance).mean()),
        "examples": int(values.numel()),
        "seconds": time.perf_counter() - start,
        "ais_per_example": values.tolist(),  # in loader order: compare models pairwise on the same examples
    }
    if iwae:
        bounds = torch.cat(iwae).double()
        out.update(iwae=float(bounds.mean()), iwae_std=float(bounds.std()) if bounds.numel() > 1 else 0.0)
    return out


HEADER = (
    "| model | data | split | AIS log p(x) ± std (± s.e.) | IWAE bound (K) | examples "
    "| temperatures × chains × leapfrog | acceptance | time |"
)
RULE = "|---|---|---|---|---|---|---|---|---|"


def markdown_row(
    model_name: str, data_name: str, split: str, results: Dict[str, float], settings: Dict[str, int]
) -> str:
    """One markdown table row of :func:`evaluate`'s results."""
    iwae = f"{results['iwae']:.3f} (K={settings['iwae_samples']})" if "iwae" in results else "—"
    return (
        f"| {model_name} | {data_name} | {split} | {results['ais']:.3f} ± {results['ais_std']:.3f} (± "
        f"{results['ais_sem']:.3f}) | {iwae} "
        f"| {results['examples']} | {settings['num_temperatures']} × {settings['num_chains']} × "
        f"{settings['leapfrog_steps']} "
        f"| {results['acceptance']:.2f} | {results['seconds']:.1f} s |"
    )


def main(args: Optional[Sequence[str]] = None) -> Dict[str, float]:
    """Command-line entry point (``args`` for calling it from Python); prints a markdown table."""
    parser = argparse.ArgumentParser(
        prog="python -m ivi_lightning.evaluate", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "--config",
        required=True,
        help="the YAML config the model was trained with, or the config.yaml its run saved",
    )
    parser.add_argument("--ckpt_path", required=True, help="Lightning checkpoint to evaluate")
    parser.add_argument("--num_temperatures", type=int, default=1000)
    parser.add_argument("--num_chains", type=int, default=16)
    parser.add_argument("--leapfrog_steps", type=int, default=10)
    parser.add_argument("--max_examples", type=int, default=1000, help="examples to score (<= 0: all)")
    parser.add_argument("--iwae_samples", type=int, default=1000, help="IWAE samples for a VAE (0: skip)")
    parser.add_argument("--schedule", choices=("sigmoid", "linear"), default="sigmoid")
    parser.add_argument(
        "--split", choices=("test", "val"), default="test", help="falls back to val without a test split"
    )
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1, ... (default: cuda if available)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--progress", action="store_true", help="show AIS progress bars")
    parser.add_argument(
        "overrides", nargs="*", help="extra config arguments, e.g. --data.init_args.data_dir=data (after --)"
    )
    opts = parser.parse_args(args)
    for name in ("num_temperatures", "num_chains", "leapfrog_steps"):
        if getattr(opts, name) <= 0:
            parser.error(f"--{name} must be a positive integer, got {getattr(opts, name)}")
    if opts.iwae_samples < 0:
        parser.error(f"--iwae_samples must be >= 0, got {opts.iwae_samples}")

    with one_line_errors(parser.prog):  # a bad config or checkpoint: one line, exit status 2
        return run(opts)


def run(opts: argparse.Namespace) -> Dict[str, float]:
    """Load, score and print, for :func:`main`'s parsed options."""
    model, datamodule = load_model_and_data(opts.config, opts.ckpt_path, opts.overrides)
    loader, split = _loader(datamodule, opts.split)
    torch.manual_seed(opts.seed)
    settings = dict(
        num_temperatures=opts.num_temperatures,
        num_chains=opts.num_chains,
        leapfrog_steps=opts.leapfrog_steps,
        iwae_samples=opts.iwae_samples,
    )
    results = evaluate(
        model,
        loader,
        max_examples=opts.max_examples if opts.max_examples > 0 else None,
        schedule=opts.schedule,
        device=opts.device,
        progress=opts.progress,
        **settings,
    )
    data_name = getattr(datamodule, "dataset", None) or type(datamodule).__name__
    print(HEADER)
    print(RULE)
    print(markdown_row(type(model).__name__, str(data_name), split, results, settings))
    return results


if __name__ == "__main__":
    main()
