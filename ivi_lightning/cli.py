"""The ``ivi`` command: LightningCLI over every algorithm and data module.

``ivi fit --config configs/pc_adv/explaining_away.yaml``; ``ivi fit --help``;
``ivi fit --config ... --print_config``. The data module's ``data_shape`` is linked into the
model, so it is never typed twice.
"""

from __future__ import annotations

import pytorch_lightning as pl
from pytorch_lightning.cli import LightningCLI

from ivi_lightning.algorithms import ImplicitVI


class IVICLI(LightningCLI):
    """LightningCLI with the data → model links of this library."""

    def add_arguments_to_parser(self, parser) -> None:
        parser.link_arguments("data.data_shape", "model.init_args.data_shape", apply_on="instantiate")


def main(args=None) -> IVICLI:
    """Entry point of the ``ivi`` console script (``args`` for calling it from Python)."""
    import datamodules  # noqa: F401  (registers the data modules for class_path resolution)

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
