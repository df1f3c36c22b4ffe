"""Score a checkpoint: the test log-likelihood by annealed importance sampling (AIS).

AIS needs densities of the prior and likelihood only, never of ``q``, so it scores every
algorithm alike (plus the IWAE bound for a VAE). This calls ``python -m ivi_lightning.evaluate``,
which rebuilds the model and data from the training config, loads the weights and prints a
markdown row; the mean ``log p(x)`` comes back as a number.

    python examples/mnist_from_config.py --data_dir data --max_steps 3000 --out runs/mnist
    python examples/score_checkpoint.py --config runs/mnist/lightning_logs/version_0/config.yaml \\
        --ckpt_path runs/mnist/lightning_logs/version_0/final.ckpt               # ~ the benchmark's AIS
    python examples/score_checkpoint.py --config ... --ckpt_path ... --tiny      # a smoke run in seconds
"""
import argparse
import math

from ivi_lightning.evaluate import main as evaluate

# The MNIST benchmark's settings (docs/benchmarks/mnist.md) and a smoke-test size.
SETTINGS = dict(num_temperatures=300, num_chains=8, leapfrog_steps=5, max_examples=50)
TINY = dict(num_temperatures=5, num_chains=2, leapfrog_steps=1, max_examples=4)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", required=True, help="the config the model was trained with (the run's config.yaml)")
    parser.add_argument("--ckpt_path", required=True)
    parser.add_argument("--tiny", action="store_true", help="a few temperatures, chains and examples")
    parser.add_argument("--device", default="cpu")
    args, overrides = parser.parse_known_args(argv)  # anything else goes to the config, e.g. --data.init_args.data_dir=data

    settings = TINY if args.tiny else SETTINGS
    options = [f"--{name}={value}" for name, value in settings.items()]
    results = evaluate(["--config", args.config, "--ckpt_path", args.ckpt_path, "--device", args.device,
                        "--iwae_samples", "0", *options, "--", *overrides])
    ais = results["ais"]
    print(f"AIS log p(x) = {ais:.3f} nats per image (finite: {math.isfinite(ais)})")
    return ais


if __name__ == "__main__":
    main()
