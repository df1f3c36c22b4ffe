"""``torch.compile`` for an algorithm's networks, as a callback (no change to the algorithms)."""

from __future__ import annotations

from typing import Any, List, Optional, Sequence

import pytorch_lightning as pl
from torch import nn

from ivi_lightning.algorithms.contracts import MODEL_PARTS, PART_NAMES

#: Attributes of an algorithm that hold networks called through ``forward``.
NETWORK_NAMES = tuple(name for name in PART_NAMES if name not in MODEL_PARTS)
#: Attributes whose networks are their children (a likelihood calls its decoder from ``log_prob``).
MODEL_NAMES = MODEL_PARTS


def compile_targets(
    pl_module: nn.Module, names: Sequence[str] = NETWORK_NAMES + MODEL_NAMES
) -> List[nn.Module]:
    """The modules whose ``forward`` the training step calls, to compile in place.

    Encoders, discriminators and denoisers are compiled whole; an encoder with a ``moments``
    method (the VAE's Gaussian encoder, which ``elbo_estimate`` calls instead of ``forward``) and
    the prior and likelihood (distributions whose ``log_prob``/``sample`` call their networks)
    have their child networks compiled instead.

    Args:
        pl_module: an algorithm (:class:`~ivi_lightning.algorithms.base.ImplicitVI`).
        names: attributes to look at; missing or non-module ones are skipped.
    """
    targets: List[nn.Module] = []
    for name in names:
        part = getattr(pl_module, name, None)
        if not isinstance(part, nn.Module) or not any(True for _ in part.parameters()):
            continue
        if name in MODEL_NAMES or hasattr(part, "moments"):
            targets += [child for child in part.children() if any(True for _ in child.parameters())]
        else:
            targets.append(part)
    return targets


class CompileNetworks(pl.Callback):
    """Compile the algorithm's networks with ``torch.compile`` when fitting starts.

    Compilation is in place (``nn.Module.compile``): parameter names, ``state_dict`` and
    checkpoints are unchanged, and the optimizers see the same parameters. The first steps are
    slow (tracing and code generation: on CPU this needs a C++ compiler); it pays off for
    networks large enough that kernel fusion matters, see the docs' Performance tips page.

    Args:
        names: algorithm attributes to compile (default: every network, see :func:`compile_targets`).
        **compile_kwargs: passed to ``torch.compile`` (e.g. ``mode="max-autotune"``, ``dynamic=False``).
    """

    def __init__(self, names: Optional[Sequence[str]] = None, **compile_kwargs: Any) -> None:
        super().__init__()
        self.names = tuple(names) if names is not None else NETWORK_NAMES + MODEL_NAMES
        self.compile_kwargs = compile_kwargs
        self.compiled: List[nn.Module] = []

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        # Called after the module's own setup (which may adopt the data module's model).
        if stage != "fit" or self.compiled:
            return
        self.compiled = compile_targets(pl_module, self.names)
        for module in self.compiled:
            module.compile(**self.compile_kwargs)
