"""MNIST from a config: train any ``configs/<algorithm>/mnist.yaml`` through the same CLI as ``ivi fit``.

Reads torchvision's raw IDX files from ``<data_dir>/MNIST/raw/`` (``--download`` fetches them),
trains, and saves a checkpoint and the resolved config (``config.yaml``) under ``--out``, which
``examples/score_checkpoint.py`` (or ``python -m ivi_lightning.evaluate``) then scores.

    python examples/mnist_from_config.py --data_dir data --download           # the config's budget
    python examples/mnist_from_config.py --data_dir data --max_steps 3000     # ~2.5 min of PCDen+LS on CPU
    python examples/mnist_from_config.py --data_dir data --max_steps 4 --tiny  # a smoke run in seconds
"""
import argparse
import os

from ivi_lightning.cli import main as ivi

# Small enough to train in seconds on a handful of images (a smoke test, not a model).
TINY = ["--model.init_args.latent_dim", "2", "--model.init_args.hidden", "[16]", "--model.init_args.noise_dim", "2",
        "--data.init_args.batch_size", "4", "--data.init_args.val_size", "8", "--trainer.limit_val_batches", "1",
        "--trainer.val_check_interval", "2", "--trainer.callbacks", "[]", "--trainer.enable_progress_bar", "false"]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data_dir", required=True, help="directory holding MNIST/raw/")
    parser.add_argument("--config", default="configs/pc_den/mnist_ls.yaml", help="an ivi fit config")
    parser.add_argument("--max_steps", type=int, default=None, help="optimizer steps (default: the config's)")
    parser.add_argument("--out", default="runs/mnist", help="log and checkpoint directory")
    parser.add_argument("--download", action="store_true", help="download MNIST into data_dir first")
    parser.add_argument("--tiny", action="store_true", help="tiny networks and batches, no image callbacks")
    args = parser.parse_args(argv)

    cli_args = ["fit", "--config", args.config, "--data.init_args.data_dir", args.data_dir,
                "--trainer.default_root_dir", args.out]
    if args.download:
        cli_args += ["--data.init_args.download", "true"]
    if args.max_steps is not None:
        cli_args += ["--trainer.max_steps", str(args.max_steps)]
    if args.tiny:
        cli_args += TINY
    cli = ivi(cli_args)

    log_dir = cli.trainer.log_dir
    checkpoint = os.path.join(log_dir, "final.ckpt")
    cli.trainer.save_checkpoint(checkpoint)
    for name, value in sorted(cli.trainer.callback_metrics.items()):
        print(f"{name} = {float(value):.3f}")
    print(f"config: {os.path.join(log_dir, 'config.yaml')}")
    print(f"checkpoint: {checkpoint}")
    return os.path.join(log_dir, "config.yaml"), checkpoint


if __name__ == "__main__":
    main()
