"""Resuming through the ``ivi`` command, as the README and the Resuming guide show it: a run killed
with SIGKILL after a checkpoint, then the same command with ``--ckpt_path last``, ends with the
uninterrupted run's networks and optimizer states — with the shipped configs and all their
callbacks (which draw random numbers and keep state)."""
import os
import pathlib
import subprocess
import sys

import pytest
import torch

from ivi_lightning.cli import main as cli_main

ROOT = pathlib.Path(__file__).resolve().parents[1]
TESTS = pathlib.Path(__file__).resolve().parent


def run_ivi(args, cwd):
    """``ivi <args>`` in a fresh process in ``cwd``, with this process's thread count (same arithmetic)."""
    env = dict(os.environ, OMP_NUM_THREADS=str(torch.get_num_threads()))
    env["PYTHONPATH"] = os.pathsep.join([str(TESTS), env.get("PYTHONPATH", "")])  # for cli_helpers.SigkillAt
    script = "from ivi_lightning.cli import console_main; console_main()"
    return subprocess.run([sys.executable, "-c", script, *args], cwd=cwd, env=env, capture_output=True, text=True)


def assert_same_training_state(path_a, path_b):
    a, b = (torch.load(p, map_location="cpu", weights_only=False) for p in (path_a, path_b))
    assert a["global_step"] == b["global_step"]
    assert a["state_dict"].keys() == b["state_dict"].keys()
    for key in a["state_dict"]:
        torch.testing.assert_close(b["state_dict"][key], a["state_dict"][key], rtol=0, atol=1e-6, msg=key)
    assert len(a["optimizer_states"]) == len(b["optimizer_states"])
    for opt_a, opt_b in zip(a["optimizer_states"], b["optimizer_states"]):
        assert opt_a["state"].keys() == opt_b["state"].keys()
        for index, state in opt_a["state"].items():
            for name, value in state.items():
                torch.testing.assert_close(opt_b["state"][index][name], value, rtol=0, atol=1e-6)


def last_checkpoints(root):
    return sorted(pathlib.Path(root).glob("lightning_logs/version_*/checkpoints/last.ckpt"))


# The README's commands on the shipped toy config, shrunk: its ExactPosteriorCallback evaluates (and
# plots) every 8 optimizer steps, and validation, which writes the default checkpoint, runs every
# 3 batches (PCAdv takes 4 optimizer steps a batch).
TOY = [
    "fit", "--config", str(ROOT / "configs/pc_adv/explaining_away.yaml"), "--trainer.max_steps", "48",
    "--trainer.val_check_interval", "3", "--trainer.enable_progress_bar", "false",
    "--trainer.callbacks.every_n_steps", "8", "--trainer.callbacks.num_samples", "2000",
    "--data.init_args.num_samples", "64", "--data.init_args.batch_size", "16", "--model.init_args.hidden", "[16,16]",
]


def test_readme_resume_after_sigkill_ends_with_the_uninterrupted_state(tmp_path):
    (tmp_path / "b").mkdir()
    cli_main([*TOY, "--trainer.default_root_dir", str(tmp_path / "a")])  # uninterrupted, in this process

    killed = run_ivi([*TOY, "--trainer.callbacks+=cli_helpers.SigkillAt", "--trainer.callbacks.step", "28"], tmp_path / "b")
    assert killed.returncode == -9, killed.stderr
    assert "Tip:" not in killed.stderr + killed.stdout  # Lightning's promotional tips are off
    [saved] = (tmp_path / "b/lightning_logs/version_0/checkpoints").glob("*.ckpt")
    assert torch.load(saved, weights_only=False)["global_step"] == 24  # the kill came after it, before the end

    resumed = run_ivi([*TOY, "--ckpt_path", "last"], tmp_path / "b")
    assert resumed.returncode == 0, resumed.stderr
    assert f"Restoring states from the checkpoint path at {saved}" in resumed.stdout + resumed.stderr
    [reference] = (tmp_path / "a/lightning_logs/version_0/checkpoints").glob("*.ckpt")
    [final] = (tmp_path / "b/lightning_logs/version_1/checkpoints").glob("*.ckpt")
    assert_same_training_state(reference, final)
    # The callback evaluates where the uninterrupted run did, not again at the first step after the resume.
    plots = sorted(p.name for p in (tmp_path / "b/lightning_logs/version_1").glob("posterior_step*.png"))
    assert plots == [f"posterior_step{step:06d}.png" for step in (32, 40, 48)]


def test_resume_last_without_a_previous_checkpoint_fails_loudly(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit:
        cli_main([*TOY, "--trainer.default_root_dir", str(tmp_path), "--ckpt_path", "last"])
    assert exit.value.code == 2
    err = capsys.readouterr().err
    assert "--ckpt_path last found no checkpoint of a previous run (looked in " in err
    assert not (tmp_path / "lightning_logs").exists()  # no new run was started


def often(config, every):
    """``config``'s callbacks (the shipped ones) drawing every ``every`` optimizer steps, as a config layer."""
    import yaml

    callbacks = yaml.safe_load((ROOT / "configs" / config).read_text())["trainer"]["callbacks"]
    for callback in callbacks:
        callback["init_args"]["every_n_steps"] = every
    return yaml.safe_dump({"trainer": {"callbacks": callbacks}})


@pytest.mark.parametrize("config", ["pc_adv/mnist.yaml", "vae/mnist.yaml"])
def test_mnist_config_resumes_exactly_from_a_mid_run_checkpoint(tmp_path, config, recwarn):
    """The shipped MNIST configs with their image callbacks, validation (the VAE's ELBO draws noise)
    and dynamic binarisation: resuming the run's own checkpoint written just before a validation (which
    the resumed run skips) ends where the run ended."""
    from test_images import write_mnist

    data = write_mnist(tmp_path / "data", n_train=40)
    args = [
        "fit", "--config", str(ROOT / "configs" / config), "--config", often(config, 2),
        "--trainer.max_steps", "16", "--trainer.accelerator", "cpu", "--trainer.val_check_interval", "4",
        "--trainer.limit_val_batches", "1", "--trainer.enable_progress_bar", "false",
        "--trainer.enable_model_summary", "false", "--data.init_args.data_dir", str(data),
        "--data.init_args.val_size", "8", "--data.init_args.batch_size", "4",
        "--trainer.callbacks+=ModelCheckpoint", "--trainer.callbacks.every_n_train_steps", "4",
        "--trainer.callbacks.save_top_k", "-1", "--trainer.callbacks.save_last", "true",
    ]
    cli_main([*args, "--trainer.default_root_dir", str(tmp_path / "a")])
    [final] = last_checkpoints(tmp_path / "a")
    [middle] = final.parent.glob("*-step=8.ckpt")
    cli_main([*args, "--trainer.default_root_dir", str(tmp_path / "b"), "--ckpt_path", str(middle)])
    assert_same_training_state(final, last_checkpoints(tmp_path / "b")[-1])
    # Lightning's advice for manual optimization with every_n_train_steps does not apply here: not shown.
    assert not [w for w in recwarn if "Using ModelCheckpoint with manual optimization" in str(w.message)]
