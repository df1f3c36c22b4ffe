"""Every script in examples/ runs at a tiny size and produces what it promises (they never rot)."""
import math
import os
import re
import subprocess
import sys
from pathlib import Path

from test_images import write_mnist  # the tiny MNIST fixture in torchvision's raw IDX layout

ROOT = Path(__file__).resolve().parents[1]
NUMBER = r"(-?[0-9.]+(?:e[+-]?[0-9]+)?|nan|-?inf)"


def run_example(name, *args, timeout=300):
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    done = subprocess.run([sys.executable, str(ROOT / "examples" / name), *map(str, args)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{name} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout


def number_after(label, text):
    match = re.search(re.escape(label) + r"\s*=\s*" + NUMBER, text)
    assert match, f"no {label!r} in the output:\n{text}"
    return float(match.group(1))


def test_toy_posterior(tmp_path):
    out = tmp_path / "posterior.png"
    text = run_example("toy_posterior.py", "--max_steps", 8, "--samples", 2000, "--out", out)
    mean_js = number_after("mean JS", text)
    assert 0.0 <= mean_js <= math.log(2) + 1e-6  # a JS divergence in nats
    assert text.count("JS(q, exact posterior)") == 4
    assert out.is_file() and out.stat().st_size > 1000


def test_custom_simulator():
    text = run_example("custom_simulator.py", "--max_steps", 8, "--num_sims", 512)
    distance = number_after("mean distance of re-simulated x to the observation", text)
    assert math.isfinite(distance) and distance >= 0
    assert "posterior mean" in text


def test_mnist_from_config_then_score_checkpoint(tmp_path):
    data = write_mnist(tmp_path / "data")
    text = run_example("mnist_from_config.py", "--data_dir", data, "--max_steps", 4, "--tiny", "--out", tmp_path / "run")
    config = Path(re.search(r"config: (.+)", text).group(1).strip())
    checkpoint = Path(re.search(r"checkpoint: (.+)", text).group(1).strip())
    assert config.is_file() and checkpoint.is_file()
    assert math.isfinite(number_after("train/loss_encoder", text))

    scored = run_example("score_checkpoint.py", "--config", config, "--ckpt_path", checkpoint, "--tiny")
    ais = number_after("AIS log p(x)", scored)
    assert math.isfinite(ais) and ais < 0  # a log-likelihood of binary 28×28 images
    assert "| PCDen | MNISTDataModule | test |" in scored
