"""The ``ivi`` command: LightningCLI over every algorithm and data module.

``ivi fit --config configs/pc_adv/explaining_away.yaml``; ``ivi fit --help``;
``ivi fit --config ... --print_config``. The data module's ``data_shape`` is linked into the
model, so it is never typed twice.

With ``--ckpt_path`` the checkpoint is checked before anything is built: a missing, truncated or
foreign file, a checkpoint of another algorithm and a hyperparameter set to another value than the
checkpoint's each end in one :class:`~ivi_lightning.checkpoint.CheckpointError`.
``--ckpt_path last`` is the newest ``last.ckpt`` of the previous runs (see :mod:`ivi_lightning.resume`).
A bad input prints one line (:mod:`ivi_lightning.cli_errors`).
"""

from __future__ import annotations

import os
import sys
import warnings
from typing import Any, Dict, List, Optional

import pytorch_lightning as pl
from pytorch_lightning.cli import LightningCLI

from ivi_lightning import algorithms
from ivi_lightning.algorithms import ImplicitVI
from ivi_lightning.algorithms.contracts import PART_NAMES
from ivi_lightning.checkpoint import read_checkpoint
from ivi_lightning.cli_errors import one_line_errors
from ivi_lightning.resume import (
    LAST,
    check_config_against_checkpoint,
    find_last_checkpoint,
    given_model_keys,
    model_checkpoint_dirs,
    no_last_checkpoint,
)
from ivi_lightning.training.quiet import quiet_lightning

ALGORITHMS = [name for name in algorithms.__all__ if name != "ImplicitVI"]


class IVICLI(LightningCLI):
    """LightningCLI with the data → model links of this library and checked checkpoints.

    Args:
        checkpoint: (keyword only) a checkpoint whose algorithm and hyperparameters the model must
            have, for a CLI built without a subcommand (``run=False``, as :mod:`ivi_lightning.evaluate`
            does); the hyperparameters the arguments leave out are taken from it.
        *args, **kwargs: those of ``LightningCLI``.
    """

    def __init__(self, *args: Any, checkpoint: Optional[str] = None, **kwargs: Any) -> None:
        self.checkpoint_path = checkpoint
        self.checkpoint: Optional[Dict[str, Any]] = None  # its content, once checked
        super().__init__(*args, **kwargs)

    def add_arguments_to_parser(self, parser) -> None:
        parser.link_arguments("data.data_shape", "model.init_args.data_shape", apply_on="instantiate")

    def parse_arguments(self, parser, args) -> None:
        """Parse as LightningCLI does, then check the checkpoint against the config (before
        LightningCLI reads the checkpoint's hyperparameters into it)."""
        tokens: List[str] = list(sys.argv[1:] if args is None else args) if not isinstance(args, dict) else []
        refuse_unknown_algorithm(tokens)
        super().parse_arguments(parser, args)
        subcommand = self.config.get("subcommand")
        node = self.config[subcommand] if subcommand else self.config
        path = node.get("ckpt_path") if subcommand else self.checkpoint_path
        if not path:
            return
        if subcommand and str(path) == LAST:
            path = self.resolve_last(node)
            node["ckpt_path"] = path
        self.checkpoint = checkpoint = read_checkpoint(path)
        algorithm = str(node.model.class_path).rsplit(".", 1)[-1]
        action = "resumes" if subcommand == "fit" else "holds"
        missing = check_config_against_checkpoint(
            algorithm, node.model.init_args, given_model_keys(tokens), checkpoint, str(path), action
        )
        if not subcommand:  # LightningCLI itself reads them only for a subcommand's --ckpt_path
            for key, value in missing.items():
                node[f"model.init_args.{key}"] = value

    def instantiate_classes(self) -> None:
        """Instantiate as LightningCLI does, then record the config of every part the config names by
        class (:func:`record_part_configs`), so that the checkpoints can rebuild it."""
        super().instantiate_classes()
        subcommand = self.config.get("subcommand")
        node = self.config[subcommand] if subcommand else self.config
        record_part_configs(self.model, node.model.init_args)

    def before_fit(self) -> None:
        """Refuse, before the loggers write anything, a Trainer one of whose callbacks cannot run
        (those with a ``check_trainer(trainer)`` method, e.g. ``LinearLRDecay`` without ``max_steps``)."""
        for callback in self.trainer.callbacks:  # type: ignore[attr-defined]
            check = getattr(callback, "check_trainer", None)
            if callable(check):
                check(self.trainer)

    @staticmethod
    def resolve_last(node: Any) -> str:
        """The checkpoint ``--ckpt_path last`` means: the newest ``last.ckpt`` of the previous runs
        under the Trainer's root (or the logger's ``save_dir``) and in ``ModelCheckpoint`` folders."""
        trainer = node.trainer
        roots = [str(trainer.get("default_root_dir") or os.getcwd())]
        logger = trainer.get("logger")
        save_dir = getattr(getattr(logger, "init_args", None), "save_dir", None)
        if save_dir:
            roots.append(str(save_dir))
        dirs = model_checkpoint_dirs(trainer.get("callbacks"))
        found = find_last_checkpoint(roots, dirs)
        if found is None:
            raise no_last_checkpoint(roots, dirs)
        return found


def record_part_configs(model: pl.LightningModule, init_args: Any) -> None:
    """Add to ``model.hparams`` the config of each part (``PART_NAMES``) that ``init_args`` gives by
    class, e.g. ``likelihood: {class_path: ivi_lightning.ImplicitLikelihood, init_args: {...}}``.

    The algorithms leave their parts out of their hyperparameters, since a part given in Python is
    an object, not a setting. A part the config names by class is a setting: recorded, it goes into
    every checkpoint, and ``JCAdv.load_from_checkpoint(path)`` rebuilds it as Lightning rebuilds a
    CLI-built model; without it the part would come back as the algorithm's default network.

    Args:
        model: the algorithm the CLI built.
        init_args: the config's ``model.init_args`` (a jsonargparse ``Namespace``).
    """
    for name in PART_NAMES:
        part = init_args.get(name)
        if part is not None and part.get("class_path"):
            model.hparams[name] = part.as_dict()


def refuse_unknown_algorithm(tokens: List[str]) -> None:
    """``--model NAME`` must name an algorithm (or be a class path or a file): list them otherwise."""
    for i, token in enumerate(tokens):
        name, _, inline = token.partition("=")
        if name != "--model":
            continue
        value = inline or (tokens[i + 1] if i + 1 < len(tokens) else "")
        if value and "." not in value and not os.path.exists(value) and value not in ALGORITHMS:
            known = ", ".join(ALGORITHMS)
            raise ValueError(f"unknown algorithm {value!r} for --model: choose one of {known}")


def main(args=None) -> IVICLI:
    """Entry point of the ``ivi`` console script (``args`` for calling it from Python).

    A bad input ends in one line on stderr and ``SystemExit(2)`` (see :mod:`ivi_lightning.cli_errors`).
    """
    import datamodules  # noqa: F401  (registers the data modules for class_path resolution)

    quiet_lightning()
    with one_line_errors("ivi"), warnings.catch_warnings():
        if args is not None:  # called from Python on purpose: sys.argv is the caller's
            warnings.filterwarnings("ignore", message="LightningCLI's args parameter")
        return IVICLI(
            ImplicitVI,
            pl.LightningDataModule,
            subclass_mode_model=True,
            subclass_mode_data=True,
            save_config_kwargs={"overwrite": True},
            args=args,
        )


def console_main() -> None:
    """The ``ivi`` console script: :func:`main` on ``sys.argv``, returning nothing.

    (The script wrapper calls ``sys.exit(console_main())``: returning the CLI object would print
    it and exit with status 1 after a successful run.)
    """
    main()


if __name__ == "__main__":
    console_main()
