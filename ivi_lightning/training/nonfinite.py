"""The non-finite policy: a NaN/inf loss or gradient stops training, or drops that update."""

from __future__ import annotations

import math
from typing import Any, Dict, List, Optional, Sequence

import pytorch_lightning as pl
import torch
from torch import Tensor, nn

NONFINITE_ACTIONS = ("raise", "skip")


class NonFiniteLossError(FloatingPointError):
    """A loss or gradient became NaN/inf: raised by ``ImplicitVI.optimize`` with ``on_nonfinite="raise"``."""


def all_finite(tensors: Sequence[Tensor]) -> bool:
    """Whether every element of ``tensors`` is finite, with one host read per device.

    A sum is non-finite when a summand is NaN or inf, so the sum of the tensors' sums is read first;
    only when it is not finite (or overflowed) is each tensor checked element by element.
    Sparse tensors are checked through their values.
    """
    values = [t.coalesce().values() if t.is_sparse else t for t in tensors]
    sums: Dict[torch.device, List[Tensor]] = {}
    for v in values:
        sums.setdefault(v.device, []).append(v.sum().float())
    if all(math.isfinite(torch.stack(group).sum().item()) for group in sums.values()):
        return True
    return all(bool(torch.isfinite(v).all()) for v in values)


def update_is_finite(module: pl.LightningModule, parameters: Sequence[Tensor], loss: Tensor) -> bool:
    """Whether ``loss`` and the gradients of ``parameters`` are finite, agreed between ranks.

    With a ``GradScaler`` (``16-mixed``) only the loss is checked: inf gradients are expected
    there, and the scaler skips those steps itself.
    """
    checked = [loss.detach().reshape(-1)]
    trainer = trainer_of(module)
    scaler = getattr(trainer.precision_plugin, "scaler", None) if trainer is not None else None
    if scaler is None:
        checked += [p.grad for p in parameters if p.grad is not None]
    finite = all_finite(checked)
    if trainer is not None and trainer.world_size > 1:
        finite = bool(trainer.strategy.reduce_boolean_decision(finite, all=True))
    return finite


def trainer_of(module: pl.LightningModule) -> Optional[pl.Trainer]:
    """The module's Trainer, or ``None`` outside one (``LightningModule.trainer`` raises then)."""
    try:
        return module.trainer
    except RuntimeError:
        return None


def parameters_of(optimizer: Any) -> List[Tensor]:
    """The parameters an optimizer (or a Lightning-wrapped one) steps."""
    return [p for group in getattr(optimizer, "optimizer", optimizer).param_groups for p in group["params"]]


def optimizer_name(module: nn.Module, optimizer: Any) -> str:
    """The networks an optimizer trains, e.g. ``"discriminator"`` or ``"encoder+likelihood"``."""
    params = {id(p) for p in parameters_of(optimizer)}
    names = [n for n, m in module.named_children() if any(id(p) in params for p in m.parameters())]
    return "+".join(names) or "unnamed"


def refuse_or_skip(module: Any, optimizer: Any, loss: Tensor, name: Optional[str]) -> None:
    """Apply ``module.hparams.on_nonfinite`` to a non-finite update (its gradients are already cleared):
    raise :class:`NonFiniteLossError` naming the network and step, or count and log the skip."""
    if module.hparams.on_nonfinite == "raise":
        raise NonFiniteLossError(
            f"{type(module).__name__}: the {name or optimizer_name(module, optimizer)} update at global step "
            f"{module.global_step} has a non-finite loss or gradient (loss={loss.detach().float().item()}); "
            "training stopped before applying it, and the last checkpoint is intact. Fix: lower lr/aux_lr, "
            "set grad_clip, or pass on_nonfinite='skip' to drop such updates"
        )
    module.nonfinite_skips += 1
    module.log("train/nonfinite_skips", float(module.nonfinite_skips), reduce_fx="max")
