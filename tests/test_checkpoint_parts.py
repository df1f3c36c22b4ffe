"""A part the config names by class (e.g. the mixture configs' ``ImplicitLikelihood``) is rebuilt by
``load_from_checkpoint`` and checked when a run resumes, as every other setting is."""

import pathlib

import pytest
import torch

import ivi_lightning as ivi
from ivi_lightning.cli import main as cli_main

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _short_fit(config: str) -> list:
    """``ivi fit`` arguments for 4 steps of a shipped config on 64 samples, without logger or checkpoint callback."""
    return [
        "fit", "--config", str(ROOT / config), "--trainer.max_steps", "4", "--trainer.enable_progress_bar", "false",
        "--trainer.logger", "false", "--trainer.enable_checkpointing", "false",
        "--data.init_args.num_samples", "64", "--data.init_args.batch_size", "16",
    ]


RING = _short_fit("configs/jc_adv/ring_ali_components.yaml")


@pytest.fixture()
def ring_checkpoint(tmp_path):
    """A checkpoint of the ring config's ALI (a 32-component ReLU generator), and the trained model."""
    cli = cli_main([*RING, "--trainer.default_root_dir", str(tmp_path)])
    path = tmp_path / "ring.ckpt"
    cli.trainer.save_checkpoint(path)
    return path, cli.model


def test_load_from_checkpoint_rebuilds_the_generator_the_config_named(ring_checkpoint):
    path, trained = ring_checkpoint
    loaded = ivi.JCAdv.load_from_checkpoint(path)
    assert isinstance(loaded.likelihood, ivi.ImplicitLikelihood)
    assert loaded.likelihood.net[0].in_features == 2 + 4 + 32  # z, ε and the one-hot of 32 components
    for name, value in trained.likelihood.state_dict().items():
        assert torch.equal(loaded.likelihood.state_dict()[name], value), name
    torch.manual_seed(0)
    x, _ = loaded.sample_model_resampled(64, oversampling_factor=4)
    assert x.shape == (64, 2) and torch.isfinite(x).all()


def test_resuming_with_another_generator_is_refused_before_anything_runs(ring_checkpoint, tmp_path, capsys):
    path, _ = ring_checkpoint
    root = tmp_path / "resumed"
    with pytest.raises(SystemExit) as exit:
        cli_main([*RING, "--model.init_args.likelihood.init_args.noise_components", "8", "--ckpt_path", str(path),
                  "--trainer.default_root_dir", str(root)])
    assert exit.value.code == 2
    error = capsys.readouterr().err
    assert "was trained with likelihood=" in error and '"noise_components": 8' in error
    assert not root.exists()


def test_resuming_with_the_same_config_restores_the_run(ring_checkpoint, tmp_path):
    path, trained = ring_checkpoint
    resumed = cli_main([*RING, "--trainer.max_steps", "6", "--ckpt_path", str(path),
                        "--trainer.default_root_dir", str(tmp_path / "resumed")])
    assert resumed.trainer.global_step == 6


def test_the_maxout_discriminator_the_grid_config_names_comes_back_with_its_checkpoint(tmp_path):
    # configs/jc_adv/grid_ali_maxout.yaml is sampled through its discriminator after loading, so
    # load_from_checkpoint must rebuild the maxout network it was trained with, not the default one.
    cli = cli_main([*_short_fit("configs/jc_adv/grid_ali_maxout.yaml"), "--trainer.default_root_dir", str(tmp_path)])
    path = tmp_path / "grid.ckpt"
    cli.trainer.save_checkpoint(path)
    loaded = ivi.JCAdv.load_from_checkpoint(path)
    assert isinstance(loaded.discriminator.net[0], ivi.nets.Maxout)
    for name, value in cli.model.discriminator.state_dict().items():
        assert torch.equal(loaded.discriminator.state_dict()[name], value), name
    torch.manual_seed(0)
    x, _ = loaded.sample_model_resampled(64, oversampling_factor=4)
    assert x.shape == (64, 2) and torch.isfinite(x).all()
