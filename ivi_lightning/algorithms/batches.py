"""From a loaded batch to the update batches an algorithm's schedule runs on."""

from __future__ import annotations

from typing import Any, List, Optional, Tuple

from torch import Tensor

from ivi_lightning.data import Simulations, batch_tensor, check_split, split_batch
from ivi_lightning.shapes import as_shape


class UpdateBatches:
    """What :class:`~ivi_lightning.algorithms.base.ImplicitVI` does with a batch: its data, shape-checked,
    split into ``updates_per_batch`` update batches, with simulated pairs as the model's joints."""

    data_shape: Tuple[int, ...]
    hparams: Any
    parameter_space: Any

    def batch_data(self, batch: Any) -> Tensor:
        """The data ``x`` of a batch (``x``, ``(x, label, ...)`` or :class:`Simulations`, standardised),
        shape-checked."""
        x = batch_tensor(batch)
        if tuple(x.shape[1:]) != self.data_shape:
            raise ValueError(
                f"{type(self).__name__} expects batches of shape [batch, "
                f"{', '.join(map(str, self.data_shape))}] "
                f"(data_shape={self.data_shape}) but got {list(x.shape)}: set data_shape to match the data"
            )
        return self.parameter_space.standardize(x) if isinstance(batch, Simulations) else x

    def check_data_module(self, datamodule: Any, stage: str) -> None:
        """Refuse, before training starts, a data module whose batches do not split or whose
        examples have another shape than ``data_shape``."""
        if stage == "fit" and isinstance(getattr(datamodule, "batch_size", None), int):
            self.check_splits(datamodule.batch_size)
        if datamodule is not None and hasattr(datamodule, "data_shape"):
            data_shape = as_shape(datamodule.data_shape)
            if data_shape != self.data_shape:
                raise ValueError(
                    f"the data module gives examples of shape {data_shape} but {type(self).__name__} was "
                    f"built for data_shape={self.data_shape}: set data_shape={list(data_shape)} "
                    "(the CLI links it for you)"
                )

    def check_splits(self, batch_size: int) -> None:
        """Refuse a batch size that ``updates_per_batch`` does not divide."""
        check_split(batch_size, self.hparams.updates_per_batch)

    def update_batches(self, batch: Any) -> Tuple[Tensor, ...]:
        """The data of a loaded batch as ``updates_per_batch`` equal update batches (shape-checked)."""
        return split_batch(self.batch_data(batch), self.hparams.updates_per_batch)

    def update_joints(self, batch: Any) -> List[Tuple[Tensor, Optional[Tuple[Tensor, Tensor]]]]:
        """``(x, model_joint)`` per update batch: the simulated pairs ``(x, z)`` of a :class:`Simulations`
        batch, in the algorithm's coordinates, stand for the model's joints (``None``: sample the model).

        With simulated pairs, the encoder's joints ``(x_i, z ~ q(z|x_i))`` are contrasted with the
        pairs themselves ``(x_i, z_i)``: the same ``x``, so only the conditionals differ, and a fixed
        simulation budget is never exceeded.
        """
        xs = self.update_batches(batch)
        if not isinstance(batch, Simulations):
            return [(x, None) for x in xs]
        zs = self.parameter_space.to_latent(batch.theta).chunk(len(xs))
        return [(x, (x, z)) for x, z in zip(xs, zs)]
