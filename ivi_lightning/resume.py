"""Resuming from the command line: which file ``--ckpt_path last`` means, and whether a config
agrees with the checkpoint it is given.

``ivi fit`` and ``python -m ivi_lightning.evaluate`` build the algorithm from a config; with a
checkpoint, the algorithm and every hyperparameter the command sets must be the checkpoint's.
A hyperparameter the command leaves out is taken from the checkpoint.
"""

from __future__ import annotations

import glob
import json
import os
import shlex
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Set

import yaml

from ivi_lightning.checkpoint import CheckpointError
from ivi_lightning.training.checkpoints import ALGORITHM_KEY

LAST = "last"
#: Where a run's checkpoints are, below a root (``default_root_dir`` or a logger's ``save_dir``):
#: no logger, then ``<name>/version_<n>`` of the TensorBoard and CSV loggers.
CHECKPOINT_PATTERNS = ("checkpoints/*.ckpt", "*/version_*/checkpoints/*.ckpt", "*/*/checkpoints/*.ckpt")
#: Not the config's to agree on: bookkeeping, and ``data_shape`` (linked from the data module).
NOT_COMPARED = ("_class_path", "_instantiator", "data_shape")


def find_last_checkpoint(roots: Iterable[str], checkpoint_dirs: Iterable[str] = ()) -> Optional[str]:
    """The checkpoint the previous runs wrote last (``last.ckpt`` where one is saved), or ``None``.

    Args:
        roots: run roots (``default_root_dir``, a logger's ``save_dir``), searched with
            :data:`CHECKPOINT_PATTERNS`.
        checkpoint_dirs: explicit ``ModelCheckpoint(dirpath=...)`` folders.
    """
    found: Set[str] = set()
    for root in roots:
        for pattern in CHECKPOINT_PATTERNS:
            found.update(glob.glob(os.path.join(glob.escape(root), pattern)))
    for folder in checkpoint_dirs:
        found.update(glob.glob(os.path.join(glob.escape(folder), "*.ckpt")))
    found = {path for path in found if os.path.isfile(path)}
    # The newest; at equal times (a step's top-k file and last.ckpt) last.ckpt.
    newest = lambda path: (os.path.getmtime(path), os.path.basename(path).startswith("last"))
    return max(found, key=newest) if found else None


def no_last_checkpoint(roots: Sequence[str], checkpoint_dirs: Sequence[str]) -> CheckpointError:
    """The error of ``--ckpt_path last`` with no checkpoint to resume (instead of a silent new run)."""
    where = [os.path.join(root, "lightning_logs/version_*/checkpoints") for root in roots]
    where += list(checkpoint_dirs)
    return CheckpointError(
        f"--ckpt_path last found no checkpoint of a previous run (looked in {', '.join(where)}): run "
        "from the folder the run was started in (or with its --trainer.default_root_dir), or pass the "
        "checkpoint's path"
    )


def given_model_keys(args: Optional[Sequence[str]]) -> Set[str]:
    """The model hyperparameters a command line sets: ``--model.[init_args.]KEY`` arguments, and
    ``model.init_args`` of every ``--config`` file and of a ``--model`` file."""
    tokens = list(args or [])
    keys: Set[str] = set()
    for i, token in enumerate(tokens):
        name, _, inline = token.partition("=")
        value = inline if inline else (tokens[i + 1] if i + 1 < len(tokens) else "")
        if name.startswith("--model."):
            key = name[len("--model.") :]
            keys.add(key[len("init_args.") :] if key.startswith("init_args.") else key)
        elif name in ("--config", "--model") and value:
            keys |= _model_keys_of(value, name == "--model")
    return {key.split(".")[0] for key in keys}


def _model_keys_of(source: str, model_file: bool) -> Set[str]:
    """``init_args`` keys of a config given as a file or as YAML text (as jsonargparse takes both)."""
    try:
        if os.path.isfile(source):
            with open(source) as f:
                content = yaml.safe_load(f)
        else:
            content = yaml.safe_load(source)
    except (OSError, yaml.YAMLError):
        return set()
    model = content if model_file else content.get("model") if isinstance(content, dict) else None
    init_args = model.get("init_args") if isinstance(model, dict) else None
    return set(init_args) if isinstance(init_args, dict) else set()


def _plain(value: Any) -> Any:
    """``value`` as JSON would hold it (tuples as lists, a config's ``Namespace`` as a dict), for
    comparing a config with a checkpoint."""
    return json.loads(json.dumps(value, default=lambda v: v.as_dict() if hasattr(v, "as_dict") else str(v)))


def _show(value: Any) -> str:
    return shlex.quote(str(value)) if isinstance(value, str) else json.dumps(_plain(value))


def check_config_against_checkpoint(
    algorithm: str,
    init_args: Mapping[str, Any],
    given: Set[str],
    checkpoint: Mapping[str, Any],
    path: str,
    action: str,
) -> Dict[str, Any]:
    """Refuse a config of another algorithm, or one that sets a hyperparameter to another value
    than the checkpoint's; return the checkpoint's values of the hyperparameters it leaves out.

    Args:
        algorithm: the config's algorithm (class name).
        init_args: the config's ``model.init_args``.
        given: the hyperparameters the command sets (:func:`given_model_keys`).
        checkpoint: the checkpoint's content.
        path: its path, for messages.
        action: what the checkpoint is used for, e.g. ``"resumes"``, for messages.

    Raises:
        CheckpointError: naming the checkpoint's algorithm or the hyperparameters that disagree.
    """
    hparams: Mapping[str, Any] = checkpoint.get("hyper_parameters") or {}
    saved = checkpoint.get(ALGORITHM_KEY) or str(hparams.get("_class_path", "")).rsplit(".", 1)[-1] or None
    if saved is not None and saved != algorithm:
        raise CheckpointError(
            f"checkpoint {path!r} was written by {saved}, but the config builds {algorithm}: pass the config "
            f"the {saved} run was trained with (e.g. its lightning_logs/version_*/config.yaml)"
            + (", or drop --ckpt_path to start a new run" if action == "resumes" else "")
        )
    compared = [key for key in hparams if key not in NOT_COMPARED and key in init_args]
    conflicts = [key for key in compared if key in given and _plain(init_args[key]) != _plain(hparams[key])]
    if conflicts:
        trained = ", ".join(f"{key}={_show(hparams[key])}" for key in conflicts)
        asked = ", ".join(f"{key}={_show(init_args[key])}" for key in conflicts)
        raise CheckpointError(
            f"checkpoint {path!r} was trained with {trained}, but this command sets {asked}: the checkpoint "
            f"{action} networks built with the trained values, so drop these arguments (or give the run's "
            "values)"
        )
    return {key: hparams[key] for key in compared if key not in given}


def model_checkpoint_dirs(callbacks: Any) -> List[str]:
    """The ``dirpath`` of every ``ModelCheckpoint`` in a config's ``trainer.callbacks``."""
    dirs = []
    for callback in callbacks if isinstance(callbacks, list) else [callbacks] if callbacks else []:
        class_path = str(getattr(callback, "class_path", "") or "")
        dirpath = getattr(getattr(callback, "init_args", None), "dirpath", None)
        if class_path.endswith("ModelCheckpoint") and dirpath:
            dirs.append(str(dirpath))
    return dirs
