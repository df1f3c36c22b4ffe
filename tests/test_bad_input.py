"""Misuse ends in one clear error naming the cause and the fix."""
import pathlib

import pytest
import pytorch_lightning as pl
import torch

from datamodules import Toy2DDataModule
from ivi_lightning import Likelihood, NormalPrior, PCAdv, PCDen, Prior, VAE
from ivi_lightning.cli import main as cli_main

ROOT = pathlib.Path(__file__).resolve().parents[1]


class Simulator(Likelihood):
    def sample(self, z):
        return z.sum(1, keepdim=True) + torch.randn(z.shape[0], 1)


class SamplerPrior(Prior):
    def sample(self, n):
        return torch.randn(n, self.dim)


def fit(model, dm, tmp_path):
    pl.Trainer(fast_dev_run=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
               enable_model_summary=False, default_root_dir=tmp_path).fit(model, dm)


@pytest.mark.parametrize("algorithm", [PCAdv, PCDen, VAE])
def test_likelihood_without_density_is_refused_naming_algorithms_that_need_none(algorithm):
    with pytest.raises(ValueError, match="needs log_prob of the likelihood.*Simulator is implicit.*Use JCAdv or JCDen, which need no density of the likelihood.$"):
        algorithm(latent_dim=2, data_shape=1, likelihood=Simulator(), learn_model=False)


@pytest.mark.parametrize("algorithm", [PCDen, VAE])
def test_prior_without_density_is_refused_naming_algorithms_that_need_none(algorithm):
    with pytest.raises(ValueError, match=r"needs log_prob of the prior.*Use PCAdv\(prior_aware=False\), JCAdv or JCDen"):
        algorithm(latent_dim=2, data_shape=1, prior=SamplerPrior(2))


def test_prior_without_density_refused_by_pc_den_but_not_plain_pc_adv():
    with pytest.raises(ValueError, match="PCDen needs log_prob of the prior"):
        PCDen(latent_dim=2, data_shape=1, prior=SamplerPrior(2))
    PCAdv(latent_dim=2, data_shape=1, prior=SamplerPrior(2), prior_aware=False)


def test_data_shape_mismatch_names_both_shapes(tmp_path):
    model = PCAdv(latent_dim=2, data_shape=3, hidden=(8,))
    with pytest.raises(ValueError, match=r"examples of shape \(4,\).*data_shape=\(3,\).*data_shape=\[4\]"):
        fit(model, Toy2DDataModule("four_points", num_samples=64, batch_size=8), tmp_path)


def test_vector_model_given_images_is_refused():
    model = VAE(latent_dim=2, data_shape=784, hidden=(8,))
    with pytest.raises(ValueError, match=r"expects batches of shape \[batch, 784\].*got \[2, 1, 28, 28\]"):
        model.batch_data(torch.zeros(2, 1, 28, 28))


def test_latent_dim_prior_disagreement():
    with pytest.raises(ValueError, match="prior is over 3-dimensional latents but latent_dim=2"):
        PCAdv(latent_dim=2, data_shape=1, prior=NormalPrior(3))


def test_fixed_model_without_known_model(tmp_path):
    model = PCAdv(latent_dim=2, data_shape=4, learn_model=False, hidden=(8,))
    with pytest.raises(ValueError, match="learn_model=False\\) needs a fixed model"):
        fit(model, Toy2DDataModule("four_points", num_samples=64, batch_size=8), tmp_path)


@pytest.mark.parametrize("kwargs,match", [
    (dict(noise_std=0.0), "noise_std must be positive"),
    (dict(aux_steps=0), "aux_steps must be positive"),
    (dict(denoiser_samples=0), "denoiser_samples must be positive"),
    (dict(lr=-1.0), "lr must be positive"),
    (dict(latent_dim=0), "latent_dim must be positive"),
    (dict(data_shape=(1, 0, 28)), "data_shape must be a positive"),
    (dict(likelihood_family="poisson"), "likelihood_family must be"),
    (dict(noise_injection="output"), "noise_injection must be"),
])
def test_bad_settings(kwargs, match):
    with pytest.raises(ValueError, match=match):
        PCDen(**{"latent_dim": 2, "data_shape": 1, **kwargs})


def test_unknown_architecture_lists_available():
    with pytest.raises(ValueError, match="architecture 'resnet9'; available: \\[.*'mlp'"):
        PCAdv(latent_dim=2, data_shape=1, architecture="resnet9")


def test_unknown_config_key_is_rejected(monkeypatch, capsys):
    monkeypatch.chdir(ROOT)
    with pytest.raises(SystemExit):
        cli_main(["fit", "--config", "configs/pc_adv/explaining_away.yaml", "--model.init_args.discriminator_steps", "3"])
    assert "discriminator_steps" in capsys.readouterr().err


# --- checkpoints, settings and devices ------------------------------------------------------------
from lightning_fabric.utilities.exceptions import MisconfigurationException  # noqa: E402

from ivi_lightning.checkpoint import CheckpointError  # noqa: E402


@pytest.fixture(scope="module")
def pc_adv_checkpoint(tmp_path_factory):
    """A real PCAdv checkpoint after one batch."""
    root = tmp_path_factory.mktemp("ckpt")
    trainer = pl.Trainer(max_steps=2, logger=False, enable_progress_bar=False, enable_model_summary=False,
                         enable_checkpointing=False, default_root_dir=root)
    trainer.fit(PCAdv(latent_dim=2, data_shape=1, hidden=(8,), aux_steps=1, learn_model=False), Toy2DDataModule(num_samples=64, batch_size=32))
    trainer.save_checkpoint(root / "pc_adv.ckpt")
    return root / "pc_adv.ckpt"


def test_checkpoint_of_another_algorithm_is_refused_naming_both(pc_adv_checkpoint, tmp_path):
    with pytest.raises(CheckpointError, match="written by PCAdv, not PCDen: load it with PCAdv.load_from_checkpoint"):
        PCDen.load_from_checkpoint(pc_adv_checkpoint)
    model = PCDen(latent_dim=2, data_shape=1, hidden=(8,), learn_model=False)
    trainer = pl.Trainer(max_steps=4, logger=False, enable_progress_bar=False, enable_checkpointing=False, default_root_dir=tmp_path)
    with pytest.raises(CheckpointError, match="written by PCAdv, not PCDen.*--model PCAdv"):
        trainer.fit(model, Toy2DDataModule(num_samples=64, batch_size=32), ckpt_path=pc_adv_checkpoint)


def test_the_base_class_loads_any_algorithms_checkpoint_and_a_subclass_only_its_own(pc_adv_checkpoint):
    from ivi_lightning import ImplicitVI
    from ivi_lightning.training.checkpoints import expected_algorithm

    class MyPCAdv(PCAdv):
        pass

    assert [expected_algorithm(c) for c in (ImplicitVI, PCAdv, MyPCAdv)] == [None, "PCAdv", "MyPCAdv"]
    with pytest.raises(CheckpointError, match="written by PCAdv, not MyPCAdv"):
        MyPCAdv.load_from_checkpoint(pc_adv_checkpoint)
    assert PCAdv.load_from_checkpoint(pc_adv_checkpoint).nonfinite_skips == 0


def test_truncated_checkpoint_is_reported_as_corrupted(pc_adv_checkpoint, tmp_path):
    broken = tmp_path / "broken.ckpt"
    broken.write_bytes(pc_adv_checkpoint.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="broken.ckpt' is corrupted or truncated.*earlier checkpoint"):
        PCAdv.load_from_checkpoint(broken)
    model = PCAdv(latent_dim=2, data_shape=1, hidden=(8,), aux_steps=1, learn_model=False)
    trainer = pl.Trainer(max_steps=4, logger=False, enable_progress_bar=False, enable_checkpointing=False, default_root_dir=tmp_path)
    with pytest.raises(CheckpointError, match="corrupted or truncated"):
        trainer.fit(model, Toy2DDataModule(num_samples=64, batch_size=32), ckpt_path=broken)


def test_missing_checkpoint_names_the_path(tmp_path):
    with pytest.raises(CheckpointError, match="nowhere.ckpt' does not exist"):
        PCAdv.load_from_checkpoint(tmp_path / "nowhere.ckpt")


def test_same_algorithm_checkpoint_loads(pc_adv_checkpoint):
    model = PCAdv.load_from_checkpoint(pc_adv_checkpoint)
    assert isinstance(model, PCAdv) and model.latent_dim == 2


def test_image_model_given_wrong_channels_is_refused():
    model = VAE(latent_dim=2, data_shape=(3, 28, 28), hidden=(8,), architecture="conv_small")
    with pytest.raises(ValueError, match=r"expects batches of shape \[batch, 3, 28, 28\].*got \[2, 1, 28, 28\]"):
        model.batch_data(torch.zeros(2, 1, 28, 28))


def test_unknown_toy_lists_the_toys():
    with pytest.raises(ValueError, match="unknown toy dataset 'spiral'; choose one of four_points, explaining_away"):
        Toy2DDataModule("spiral")


@pytest.mark.parametrize("kwargs,match", [
    (dict(on_nonfinite="ignore"), "on_nonfinite must be one of raise, skip"),
    (dict(grad_clip=0.0), "grad_clip must be positive"),
])
def test_bad_reliability_settings(kwargs, match):
    with pytest.raises(ValueError, match=match):
        PCAdv(latent_dim=2, data_shape=1, **kwargs)


def test_more_gpus_than_available_is_refused(monkeypatch):
    if not torch.cuda.is_available():
        with pytest.raises(MisconfigurationException, match="accelerator is not available.*\\['cpu'\\]"):
            pl.Trainer(accelerator="cuda", devices=2)
    from pytorch_lightning.accelerators import CUDAAccelerator

    monkeypatch.setattr(CUDAAccelerator, "is_available", staticmethod(lambda: True))
    monkeypatch.setattr("lightning_fabric.accelerators.cuda.num_cuda_devices", lambda: 1)
    with pytest.raises(MisconfigurationException, match=r"requested gpu: \[0, 1, 2, 3\]\s+But your machine only has: \[0\]"):
        pl.Trainer(accelerator="cuda", devices=4)


# --- user parts, checked once at setup on a probe of two examples --------------------------------
class WidePrior(Prior):
    """Says dim=2 but samples 3-vectors."""

    def sample(self, n):
        return torch.randn(n, 3)

    def log_prob(self, z):
        return -0.5 * z.pow(2).sum(-1)


class PerCoordinatePrior(NormalPrior):
    """log_prob per coordinate ([n, dim]) instead of per latent ([n])."""

    def log_prob(self, z):
        return -0.5 * z.pow(2)


class UninitialisedPrior(Prior):
    def __init__(self, dim):  # forgets super().__init__(dim)
        pass


class WideSimulator(Likelihood):
    def sample(self, z):
        return torch.randn(z.shape[0], 3)


def probe_fit(model, tmp_path, dataset="explaining_away"):
    fit(model, Toy2DDataModule(dataset, num_samples=64, batch_size=16), tmp_path)


@pytest.mark.parametrize("make,match", [
    (lambda: PCAdv(latent_dim=2, data_shape=1, prior=WidePrior(2), hidden=(8,)),
     r"PCAdv: the prior's WidePrior.sample\(2\) returned shape \[2, 3\], expected \[2, 2\]"),
    (lambda: PCAdv(latent_dim=2, data_shape=1, prior=PerCoordinatePrior(2), hidden=(8,)),
     r"the prior's PerCoordinatePrior.log_prob\(z of shape \[2, 2\]\) returned shape \[2, 2\], expected \[2\]"),
    (lambda: JCAdvFor(WideSimulator()),
     r"JCAdv: the likelihood's WideSimulator.sample\(z of shape \[2, 2\]\) returned shape \[2, 3\], expected \[2, 1\]"),
    (lambda: PCAdv(latent_dim=2, data_shape=1, hidden=(8,), learn_model=False, encoder=torch.nn.Linear(1, 3)),
     r"the encoder Linear\(x of shape \[2, 1\]\) returned shape \[2, 3\], expected \[2, 2\]"),
])
def test_a_wrong_part_is_named_with_expected_and_actual_shapes_at_setup(tmp_path, make, match):
    with pytest.raises(ValueError, match=match):
        probe_fit(make(), tmp_path)


def JCAdvFor(simulator):
    from ivi_lightning import JCAdv

    return JCAdv(latent_dim=2, data_shape=1, prior=NormalPrior(2), likelihood=simulator, learn_model=False, hidden=(8,))


def test_the_probe_leaves_the_training_stream_and_modes_alone():
    from ivi_lightning.algorithms.contracts import check_parts

    model = PCAdv(latent_dim=2, data_shape=1, hidden=(8,))
    torch.manual_seed(5)
    state = torch.get_rng_state()
    check_parts(model)
    assert torch.equal(torch.get_rng_state(), state) and model.encoder.training


def test_a_prior_that_skips_super_init_is_named():
    with pytest.raises(ValueError, match=r"the prior UninitialisedPrior is not initialised: its __init__ must call super\(\).__init__\(dim\)"):
        PCAdv(latent_dim=2, data_shape=1, prior=UninitialisedPrior(2))


@pytest.mark.parametrize("kwargs,match", [
    (dict(data_shape=1.7), r"data_shape must be a positive int or a tuple of positive ints, got 1.7"),
    (dict(data_shape="28"), r"data_shape must be a positive int .* got '28'"),
    (dict(latent_dim=2.9), r"latent_dim must be an integer, got 2.9"),
    (dict(aux_steps=1.5), r"aux_steps must be an integer, got 1.5"),
    (dict(hidden=(8.5,)), r"hidden must be a list of positive integer layer sizes"),
])
def test_non_integer_sizes_are_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        PCAdv(**{"latent_dim": 2, "data_shape": 1, **kwargs})


def test_sample_posterior_on_observations_of_the_wrong_width_names_both_shapes():
    model = PCAdv(latent_dim=2, data_shape=1, hidden=(8,))
    with pytest.raises(ValueError, match=r"sample_posterior takes observations of shape \[1\] or \[batch, 1\], got \[5, 3\]"):
        model.sample_posterior(torch.zeros(5, 3))


def test_bernoulli_likelihood_on_real_valued_data_is_refused_with_the_fix(tmp_path):
    model = VAE(latent_dim=2, data_shape=2, hidden=(8,))  # the default likelihood_family: Bernoulli
    with pytest.raises(ValueError, match=r"VAE's likelihood is Bernoulli .* values in \[-\d.*likelihood_family='gaussian'"):
        probe_fit(model, tmp_path, "ring")
    probe_fit(VAE(latent_dim=2, data_shape=2, hidden=(8,), likelihood_family="gaussian"), tmp_path, "ring")


def test_a_batch_larger_than_the_data_set_is_an_error():
    with pytest.raises(ValueError, match=r"batch_size=64 is larger than the data set \(num_samples=32\)"):
        Toy2DDataModule("ring", num_samples=32, batch_size=64)
    from ivi_lightning.data import resumable_loader

    with pytest.raises(ValueError, match=r"a training batch of 8 examples is larger than the data set \(5 examples\)"):
        resumable_loader(torch.utils.data.TensorDataset(torch.zeros(5, 1)), 8, shuffle=True, seed=0)
