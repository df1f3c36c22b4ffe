"""Bad input at the command line (``ivi fit``, ``python -m ivi_lightning.evaluate``) ends in one
short line naming the cause and the fix, with exit status 2 (as argparse's errors), and nothing
half-written; a checkpoint given to either is checked against the config."""
import pathlib

import pytest
import torch

from ivi_lightning import evaluate
from ivi_lightning.cli import main as cli_main

ROOT = pathlib.Path(__file__).resolve().parents[1]
TOY = str(ROOT / "configs/pc_adv/explaining_away.yaml")
SMALL = ["--trainer.max_steps", "4", "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
         "--data.init_args.num_samples", "64", "--data.init_args.batch_size", "16", "--model.init_args.hidden", "[8]"]


def fails(capsys, args, status=2, call=cli_main):
    """Run the CLI; return its stderr after checking the exit status and that it is short (no traceback)."""
    with pytest.raises(SystemExit) as exit:
        call(args)
    assert exit.value.code == status
    err = capsys.readouterr().err
    assert "Traceback" not in err and "Namespace(" not in err and "Does not validate" not in err
    assert "(set IVI_TRACEBACK=1 to see the traceback)" in err
    lines = [line for line in err.splitlines() if line.startswith("ivi: error:") or "error:" in line]
    assert len(lines) == 1, err
    return lines[0]


@pytest.mark.parametrize("config,args,message", [
    (TOY, ["--model.init_args.lr", "-0.001"], "ivi: error: lr must be positive, got -0.001"),
    (TOY, ["--model.init_args.aux_lr", "0"], "aux_lr must be positive, got 0"),
    (TOY, ["--model.init_args.aux_steps", "0"], "aux_steps must be positive"),
    (TOY, ["--data.init_args.batch_size", "0"], "batch_size must be positive"),
    (TOY, ["--data.init_args.dataset", "spiral"], "unknown toy dataset 'spiral'; choose one of four_points"),
    (TOY, ["--data.init_args.batch_size", "128"], r"batch_size=128 is larger than the data set \(num_samples=64\)"),
    (TOY, ["--model", "PCAdvv"], "unknown algorithm 'PCAdvv' for --model: choose one of PCAdv, PCDen, VAE, JCAdv"),
    (str(ROOT / "configs/pc_den/explaining_away.yaml"), ["--model.init_args.noise_std", "-0.3"], "noise_std must be positive"),
    (str(ROOT / "configs/jc_adv/ring.yaml"), ["--model.init_args.likelihood_family", "bernoulli"],
     "likelihood is Bernoulli .* the data has values in .*likelihood_family gaussian"),
])
def test_a_bad_value_prints_one_line_with_our_message(tmp_path, capsys, config, args, message):
    import re

    line = fails(capsys, ["fit", "--config", config, *SMALL, "--trainer.default_root_dir", str(tmp_path), *args])
    assert re.search(message, line), line


def test_help_and_print_config_still_work(capsys):
    with pytest.raises(SystemExit) as exit:
        cli_main(["fit", "--config", TOY, "--print_config"])
    assert exit.value.code == 0 and "class_path: ivi_lightning.PCAdv" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit:
        cli_main(["fit", "--help"])
    assert exit.value.code == 0 and "--ckpt_path" in capsys.readouterr().out


# --- checkpoints ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A PCAdv run of the shipped toy config with hidden=[8], its last.ckpt and saved config."""
    root = tmp_path_factory.mktemp("run")
    cli_main(["fit", "--config", TOY, *SMALL, "--trainer.default_root_dir", str(root),
              "--trainer.callbacks.num_samples", "500", "--trainer.callbacks.plot", "false",
              "--trainer.callbacks+=ModelCheckpoint", "--trainer.callbacks.save_last", "true"])
    [last] = root.glob("lightning_logs/version_0/checkpoints/last.ckpt")
    return last


def test_resume_with_a_checkpoint_of_another_algorithm_is_refused(run, tmp_path, capsys):
    pc_den = str(ROOT / "configs/pc_den/explaining_away.yaml")
    line = fails(capsys, ["fit", "--config", pc_den, *SMALL, "--trainer.default_root_dir", str(tmp_path), "--ckpt_path", str(run)])
    assert f"CheckpointError: checkpoint '{run}' was written by PCAdv, but the config builds PCDen" in line
    assert not (tmp_path / "lightning_logs").exists()


def test_resume_refuses_arguments_that_would_be_dropped_by_name(run, tmp_path, capsys):
    line = fails(capsys, ["fit", "--config", TOY, *SMALL, "--trainer.default_root_dir", str(tmp_path), "--ckpt_path", str(run),
                          "--model.init_args.lr", "0.5", "--model.init_args.hidden", "[64,64]"])
    assert "was trained with hidden=[8], lr=0.001, but this command sets hidden=[64, 64], lr=0.5" in line


@pytest.mark.parametrize("content,message", [
    (None, "does not exist"),
    ("truncated", "is corrupted or truncated"),
    (b"hello, I am not a checkpoint\n", "is corrupted or truncated"),
])
def test_an_unreadable_checkpoint_is_a_checkpoint_error_in_fit_and_evaluate(run, tmp_path, capsys, content, message):
    path = tmp_path / "bad.ckpt"
    if content == "truncated":
        path.write_bytes(run.read_bytes()[:3000])
    elif content is not None:
        path.write_bytes(content)
    line = fails(capsys, ["fit", "--config", TOY, *SMALL, "--trainer.default_root_dir", str(tmp_path), "--ckpt_path", str(path)])
    assert f"ivi: error: CheckpointError: checkpoint '{path}' {message}" in line
    line = fails(capsys, ["--config", TOY, "--ckpt_path", str(path)], call=evaluate.main)
    assert f"evaluate: error: CheckpointError: checkpoint '{path}' {message}" in line


def test_evaluate_takes_the_checkpoints_hyperparameters_and_refuses_a_config_that_disagrees(run, capsys):
    vae = str(ROOT / "configs/vae/explaining_away.yaml")
    line = fails(capsys, ["--config", vae, "--ckpt_path", str(run)], call=evaluate.main)
    assert "was written by PCAdv, but the config builds VAE" in line
    line = fails(capsys, ["--config", TOY, "--ckpt_path", str(run), "--", "--model.init_args.generator_activation", "relu"],
                 call=evaluate.main)
    assert "was trained with generator_activation=silu, but this command sets generator_activation=relu" in line
    # The shipped config leaves hidden out: the checkpoint's [8] is used (the default [256, 256] would not load).
    model, _ = evaluate.load_model_and_data(TOY, str(run))
    assert model.hparams.hidden == [8]
    for key, value in torch.load(run, weights_only=False)["state_dict"].items():
        torch.testing.assert_close(model.state_dict()[key], value, rtol=0, atol=0)


def test_a_full_disk_is_one_line_naming_the_disk_and_leaves_no_partial_file(tmp_path, capsys):
    if not pathlib.Path("/dev/full").exists():
        pytest.skip("needs /dev/full")
    line = fails(capsys, ["fit", "--config", TOY, *SMALL, "--trainer.default_root_dir", str(tmp_path),
                          "--trainer.plugins", "cli_helpers.FullDiskCheckpointIO",
                          "--trainer.callbacks+=ModelCheckpoint", "--trainer.callbacks.every_n_train_steps", "4"], status=1)
    assert "DiskFullError: [Errno 28] no space left on the disk holding" in line
    assert str(tmp_path / "lightning_logs/version_0/checkpoints") in line
    assert not list(tmp_path.rglob("*.ckpt*")) and not list(tmp_path.rglob(".*.tmp-*"))
