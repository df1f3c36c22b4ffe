"""Inference with a simulator: the data module's budget, bounded priors, standardisation, C2ST."""
import math
import re

import pytest
import pytorch_lightning as pl
import torch
from torch.distributions import Independent, Uniform, constraints

import ivi_lightning as ivi
from datamodules import SimulatorDataModule, TwoMoonsSimulator
from ivi_lightning.data import Simulations
from ivi_lightning.distributions.support import BoxUniform, DistributionPrior, ParameterSpace, as_prior
from ivi_lightning.evaluation import c2st


class CountingSimulator:
    """``x = θ² + N(0, 0.05²)``: a posterior with modes at ``±√x``; counts the parameters it simulates."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, theta: torch.Tensor) -> torch.Tensor:
        self.calls += theta.shape[0]
        return theta.pow(2) + 0.05 * torch.randn_like(theta)


def trainer(steps: int, **kwargs) -> pl.Trainer:
    options = dict(max_steps=steps, logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
    return pl.Trainer(**{**options, **kwargs})


def test_fixed_budget_is_reproducible_counted_and_never_exceeded():
    simulator = CountingSimulator()
    dm = SimulatorDataModule(BoxUniform([-1.0], [1.0]), simulator, num_simulations=500, batch_size=50, val_fraction=0.2, seed=3)
    assert simulator.calls == 2 and dm.simulation_count == 0  # the shape probe is not part of the budget
    dm.setup("fit")
    assert dm.simulation_count == 500 and simulator.calls == 502
    assert dm.train_pairs.x.shape == (400, 1) and dm.val_pairs.x.shape == (100, 1)
    again = SimulatorDataModule(BoxUniform([-1.0], [1.0]), CountingSimulator(), num_simulations=500, batch_size=50, val_fraction=0.2, seed=3)
    again.setup("fit")
    assert torch.equal(again.train_pairs.theta, dm.train_pairs.theta) and torch.equal(again.train_pairs.x, dm.train_pairs.x)
    other = SimulatorDataModule(BoxUniform([-1.0], [1.0]), CountingSimulator(), num_simulations=500, batch_size=50, seed=4)
    other.setup("fit")
    assert not torch.equal(other.train_pairs.theta[:10], dm.train_pairs.theta[:10])

    pl.seed_everything(0)
    model = ivi.JCAdv(latent_dim=1, data_shape=1, learn_model=False, hidden=(16,), aux_steps=1)
    trainer(20, limit_val_batches=0).fit(model, dm)
    assert simulator.calls == 502 and dm.simulation_count == 500  # training used only the stored pairs


def test_simulation_leaves_global_random_streams_untouched():
    torch.manual_seed(7)
    expected = torch.rand(3)
    torch.manual_seed(7)
    SimulatorDataModule(BoxUniform([-1.0], [1.0]), CountingSimulator(), num_simulations=100, batch_size=10).setup("fit")
    assert torch.equal(torch.rand(3), expected)


def test_online_mode_draws_fresh_pairs_every_batch():
    simulator = CountingSimulator()
    dm = SimulatorDataModule(BoxUniform([-1.0], [1.0]), simulator, num_simulations=None, batch_size=8, reference_simulations=100)
    dm.setup("fit")
    assert dm.simulation_count == 100
    batches = iter(dm.train_dataloader())
    first, second = next(batches), next(batches)
    assert isinstance(first, Simulations) and first.theta.shape == (8, 1)
    assert not torch.equal(first.theta, second.theta)
    assert dm.simulation_count == 116


def test_bad_simulator_and_budget_are_refused():
    with pytest.raises(ValueError, match="one simulation per parameter"):
        SimulatorDataModule(BoxUniform([-1.0], [1.0]), lambda theta: theta.sum(), num_simulations=10)
    with pytest.raises(ValueError, match="fewer than one batch"):
        SimulatorDataModule(BoxUniform([-1.0], [1.0]), CountingSimulator(), num_simulations=10, batch_size=256)
    with pytest.raises(ValueError, match="NaN or inf"):
        SimulatorDataModule(BoxUniform([-1.0], [1.0]), lambda theta: theta / 0.0 * 0.0, num_simulations=10, batch_size=2).setup("fit")
    with pytest.raises(TypeError, match="torch.distributions.Distribution"):
        as_prior("uniform")


def test_any_torch_distribution_is_a_prior_with_its_support():
    prior = as_prior(Independent(Uniform(torch.zeros(2), 2 * torch.ones(2)), 1))
    assert isinstance(prior, DistributionPrior) and prior.dim == 2
    space = ParameterSpace(2, 1)
    space.fit(prior.sample(1000), torch.randn(1000, 1), prior.support)
    theta = space.to_parameter(20 * torch.randn(1000, 2))
    assert bool(((theta > 0) & (theta < 2)).all())


@pytest.mark.parametrize(
    "support", [constraints.independent(constraints.interval(-1.0, 3.0), 1), constraints.positive, constraints.real_vector]
)
def test_log_abs_det_jacobian_matches_a_numerical_jacobian(support):
    space = ParameterSpace(2, 1)
    theta = {constraints.real_vector: torch.randn(500, 2), constraints.positive: torch.rand(500, 2) * 3 + 0.1}.get(support, torch.rand(500, 2) * 4 - 1)
    space.fit(theta, torch.randn(500, 1), support)
    for z in torch.randn(4, 2, dtype=torch.float64):
        space64 = space.double()
        jacobian = torch.autograd.functional.jacobian(space64.to_parameter, z)
        numerical = torch.linalg.slogdet(jacobian).logabsdet
        assert space64.log_abs_det_jacobian(z.unsqueeze(0)).item() == pytest.approx(numerical.item(), abs=1e-8)


def test_latent_prior_density_integrates_to_one():
    dm = SimulatorDataModule(BoxUniform([0.0], [2.0]), CountingSimulator(), num_simulations=200, batch_size=20)
    model = ivi.JCAdv(latent_dim=1, data_shape=1, learn_model=False, hidden=(8,), aux_steps=1)
    trainer(1, limit_val_batches=0).fit(model, dm)
    z = torch.linspace(-12, 12, 20001).unsqueeze(1)
    density = model.prior.log_prob(z).exp()
    assert torch.trapezoid(density, z.squeeze(1)).item() == pytest.approx(1.0, abs=1e-3)


def test_posterior_samples_lie_in_the_support_in_user_units_and_survive_a_checkpoint(tmp_path):
    dm = SimulatorDataModule(BoxUniform([-1.0, 0.0], [1.0, 5.0]), lambda t: torch.cat([t, t.sum(1, keepdim=True)], 1) * 100.0,
                             num_simulations=400, batch_size=40)
    pl.seed_everything(0)
    model = ivi.JCDen(latent_dim=2, data_shape=3, learn_model=False, hidden=(16,), aux_steps=1)
    fit = trainer(8, limit_val_batches=0, default_root_dir=tmp_path, enable_checkpointing=True)
    fit.fit(model, dm)
    x_o = torch.tensor([0.0, 250.0, 250.0])
    with torch.no_grad():
        samples = model.sample_posterior(x_o, 5000)  # one observation, no batch dimension
    assert samples.shape == (5000, 2)
    assert bool((samples[:, 0] > -1).all() and (samples[:, 0] < 1).all() and (samples[:, 1] > 0).all() and (samples[:, 1] < 5).all())
    assert model.sample_posterior(x_o.unsqueeze(0), 3).shape == (3, 1, 2)
    assert model.hparams.likelihood_family is None

    path = tmp_path / "model.ckpt"
    fit.save_checkpoint(path)
    loaded = ivi.JCDen.load_from_checkpoint(path)  # no data module: the standardisation comes from the checkpoint
    assert torch.equal(loaded.parameter_space.data_std, model.parameter_space.data_std)
    torch.manual_seed(1)
    a = loaded.sample_posterior(x_o, 10)
    torch.manual_seed(1)
    b = model.sample_posterior(x_o, 10)
    assert torch.allclose(a, b)
    with pytest.raises(ValueError, match="observations of shape"):
        model.sample_posterior(torch.zeros(2), 1)
    # Far out in the latent, where float32's sigmoid rounds onto the bound, draws stay strictly inside.
    edge = loaded.parameter_space.to_parameter(torch.tensor([[-1e3, -1e3], [1e3, 1e3]]))
    assert bool((edge[:, 0].abs() < 1).all() and (edge[:, 1] > 0).all() and (edge[:, 1] < 5).all())


def test_a_simulator_data_module_supplies_the_model():
    dm = SimulatorDataModule(BoxUniform([-1.0], [1.0]), CountingSimulator(), num_simulations=100, batch_size=10)
    with pytest.raises(ValueError, match="learn_model=False"):
        trainer(1).fit(ivi.JCAdv(latent_dim=1, data_shape=1, hidden=(8,), likelihood_family="gaussian"), dm)
    with pytest.raises(ValueError, match="needs log_prob of the likelihood"):
        trainer(1).fit(ivi.PCAdv(latent_dim=1, data_shape=1, learn_model=False, hidden=(8,)), dm)


def test_c2st_tells_equal_from_disjoint_samples():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(400, 2, generator=g), torch.randn(400, 2, generator=g)
    assert abs(c2st(a, b, folds=3) - 0.5) < 0.08
    assert c2st(a, b + 6.0, folds=3) > 0.98
    with pytest.raises(ValueError, match="same dim"):
        c2st(a, torch.randn(10, 3))


def test_forward_kl_weights_samples_by_the_estimated_ratio():
    from ivi_lightning.estimators import forward_kl_encoder_loss

    t = torch.tensor([0.0, math.log(3.0)], requires_grad=True)  # the second sample is 3x over-represented
    forward_kl_encoder_loss(t).backward()
    assert t.grad[0].item() == pytest.approx(3 * t.grad[1].item())  # p/q: 1 against 1/3


def two_mode_posterior_samples(algorithm: type, **options) -> torch.Tensor:
    """4,000 posterior draws at x_o = 0.5 after 2,000 steps on x = θ² + noise: modes at ±0.71, half the mass each."""
    pl.seed_everything(0)
    dm = SimulatorDataModule(BoxUniform([-1.0], [1.0]), CountingSimulator(), num_simulations=4000, batch_size=200, seed=0)
    model = algorithm(latent_dim=1, data_shape=1, learn_model=False, hidden=(64, 64), **options)
    trainer(2000, limit_val_batches=0).fit(model, dm)
    with torch.no_grad():
        return model.sample_posterior(torch.tensor([0.5]), 4000).squeeze(1)


def assert_both_modes_kept(samples: torch.Tensor) -> None:
    near_positive = ((samples - math.sqrt(0.5)).abs() < 0.2).float().mean().item()
    near_negative = ((samples + math.sqrt(0.5)).abs() < 0.2).float().mean().item()
    assert near_positive >= 0.25 and near_negative >= 0.25, (near_positive, near_negative)


def test_two_mode_posterior_keeps_both_modes():
    """The forward KL is mode-covering: on this problem it keeps both modes on every seed tried,
    where the reverse KL and the denoisers can settle on one."""
    assert_both_modes_kept(two_mode_posterior_samples(ivi.JCAdv, loss="forward_kl", aux_steps=2))


def test_instance_noise_keeps_both_modes_where_the_reverse_kl_settles_on_one():
    """Blurring both joints' z before the discriminator, then annealing the blur away, lets the
    mode-seeking reverse KL see (and reach) the mode it would miss."""
    plain = two_mode_posterior_samples(ivi.JCAdv, loss="kl", aux_steps=2)
    assert min(((plain - m).abs() < 0.2).float().mean().item() for m in (-0.5**0.5, 0.5**0.5)) < 0.05
    assert_both_modes_kept(
        two_mode_posterior_samples(ivi.JCAdv, loss="kl", aux_steps=2, instance_noise=1.0, instance_noise_steps=1000)
    )


def test_instance_noise_is_annealed_to_zero_and_bad_values_are_refused():
    model = ivi.JCAdv(latent_dim=1, data_shape=1, learn_model=False, instance_noise=0.8, instance_noise_steps=100)
    assert model.instance_noise() == 0.8
    model.eval()
    assert model.instance_noise() == 0.0  # validation and sampling see no blur
    for options, message in [
        (dict(instance_noise=-0.1), "instance_noise is a standard deviation"),
        (dict(instance_noise=0.5), "needs instance_noise_steps > 0"),
        (dict(instance_noise=0.5, instance_noise_steps=2.5), "instance_noise_steps must be a whole number"),
    ]:
        with pytest.raises(ValueError, match=message):
            ivi.JCAdv(latent_dim=1, data_shape=1, learn_model=False, **options)


def test_instance_noise_blurs_both_joints_alike_and_trains_a_learned_ali_model():
    from torch.utils.data import DataLoader, TensorDataset

    from ivi_lightning.algorithms.joint_discriminator import add_noise

    torch.manual_seed(0)
    z = torch.randn(20_000, 2)
    assert add_noise(z, 0.0) is z
    assert (add_noise(z, 0.5) - z).std().item() == pytest.approx(0.5, abs=0.01)
    # ALI with a learned model: the generator's joints are blurred as well, and the noise is gone at the end.
    model = ivi.JCAdv(latent_dim=1, data_shape=2, loss="ali", likelihood_family="gaussian", hidden=(8,),
                      instance_noise=0.5, instance_noise_steps=10)
    trainer(12).fit(model, DataLoader(TensorDataset(torch.randn(64, 2)), batch_size=16))
    assert model.global_step == 12 and model.instance_noise() == 0.0


def gaussian_mixture_denoiser(means: torch.Tensor, std: float):
    """The exact denoised mean ``E[z | z + σ ε]`` for ``z ~ ½ Σ_k N(means[k], std²)`` (1-D)."""

    def denoise(z_noisy: torch.Tensor, sigma: float) -> torch.Tensor:
        var = std**2 + sigma**2
        weights = torch.softmax(-((z_noisy - means) ** 2) / (2 * var), dim=1)  # [n, modes]
        return (weights * (std**2 * z_noisy + sigma**2 * means) / var).sum(1, keepdim=True)

    return denoise


def test_reverse_diffusion_draws_the_distribution_of_an_exact_denoiser():
    from ivi_lightning.estimators import reverse_diffusion

    torch.manual_seed(0)
    levels = torch.logspace(math.log10(3.0), math.log10(0.01), 300)
    gaussian = reverse_diffusion(gaussian_mixture_denoiser(torch.tensor([1.5]), 0.3), 1.5 + 3.0 * torch.randn(20_000, 1), levels)
    assert gaussian.mean().item() == pytest.approx(1.5, abs=0.02) and gaussian.std().item() == pytest.approx(0.3, abs=0.01)
    # Two modes far apart, started from one broad blob: half the draws end at each, each mode at its width.
    means = torch.tensor([-1.0, 1.0])
    draws = reverse_diffusion(gaussian_mixture_denoiser(means, 0.1), 3.2 * torch.randn(20_000, 1), levels).squeeze(1)
    right = draws > 0
    assert right.float().mean().item() == pytest.approx(0.5, abs=0.03)
    assert draws[right].std().item() == pytest.approx(0.1, abs=0.01) and draws[~right].mean().item() == pytest.approx(-1.0, abs=0.02)


def test_jc_den_diffusion_sampler_keeps_both_modes_inside_the_support():
    """JCDen's model denoiser, walked down by the diffusion sampler, on the same two-mode posterior."""
    samples = two_mode_posterior_samples(ivi.JCDen, model_score="denoiser", noise_std=0.01, max_noise_std=3.0,
                                         posterior_sampler="diffusion", diffusion_steps=200)
    assert_both_modes_kept(samples)
    assert bool((samples.abs() < 1).all())


@pytest.mark.parametrize(
    "options, message",
    [
        (dict(posterior_sampler="langevin"), "posterior_sampler must be one of encoder, diffusion"),
        (dict(posterior_sampler="diffusion", model_score="denoiser"), "set max_noise_std"),
        (dict(posterior_sampler="diffusion", max_noise_std=1.0, model_score="density"), "set model_score='denoiser'"),
    ],
)
def test_jc_den_refuses_a_sampler_it_cannot_run(options, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        ivi.JCDen(latent_dim=1, data_shape=1, learn_model=False, noise_std=0.01, **options)


@pytest.mark.parametrize("config", ["configs/jc_den/sbi_two_moons.yaml", "configs/jc_adv/sbi_two_moons.yaml"])
def test_sbi_config_trains_through_the_cli_and_its_checkpoint_samples_in_user_units(config, tmp_path, monkeypatch):
    import pathlib

    from ivi_lightning.cli import main as cli_main

    monkeypatch.chdir(pathlib.Path(__file__).resolve().parents[1])
    cli_main(["fit", "--config", config, "--trainer.max_epochs", "1", "--trainer.default_root_dir", str(tmp_path),
              "--data.init_args.num_simulations", "600", "--data.init_args.batch_size", "100", "--model.init_args.hidden", "[16]",
              *(["--model.init_args.denoiser_hidden", "[16]"] if "jc_den" in config else [])])
    (checkpoint,) = tmp_path.glob("lightning_logs/version_0/checkpoints/*.ckpt")
    algorithm = ivi.JCDen if "jc_den" in config else ivi.JCAdv
    samples = algorithm.load_from_checkpoint(checkpoint).sample_posterior(torch.tensor([-0.64, 0.16]), 500)
    assert samples.shape == (500, 2) and bool((samples.abs() < 1).all())


def test_the_simulator_guide_quick_start_runs(monkeypatch):
    """The guide's Python quick start, as printed, at one epoch."""
    import pathlib
    import re

    guide = (pathlib.Path(__file__).resolve().parents[1] / "docs" / "guides" / "simulator.md").read_text()
    code = re.findall(r"```python\n(.*?)```", guide, re.S)[0]
    assert "pl.Trainer(max_epochs=80)" in code
    namespace: dict = {}
    assert 'support_mode="reject")' in code
    code = code.replace('support_mode="reject")', 'support_mode="reject", diffusion_steps=10)')  # fast
    exec(code.replace("pl.Trainer(max_epochs=80)", "pl.Trainer(max_epochs=1, logger=False, enable_checkpointing=False)"), namespace)
    samples = namespace["samples"]
    assert samples.shape == (10_000, 2) and bool((samples.abs() < 2).all())


def test_reject_mode_infers_in_the_parameters_and_redraws_draws_outside_the_support():
    from ivi_lightning.distributions.support import rejection_sample

    torch.manual_seed(0)
    space = ParameterSpace(1, 1, support_mode="reject")
    theta = torch.rand(1000, 1) * 2
    space.fit(theta, theta, constraints.interval(0.0, 2.0))
    z = space.to_latent(theta)
    assert abs(z.mean().item()) < 1e-4 and z.std().item() == pytest.approx(1.0, abs=1e-4)
    assert torch.allclose(space.to_parameter(z), theta, atol=1e-5)  # only z-scored: no squashing near the bounds
    # Kept draws of N(1, 1) are the truncated normal on [0, 2]: mean 1, std 0.5395.
    kept = rejection_sample(lambda m: 1 + torch.randn(m, 2, 1), space.inside, 20_000)
    assert kept.shape == (20_000, 2, 1) and bool(space.inside(kept).all())
    assert kept.mean().item() == pytest.approx(1.0, abs=0.01) and kept.std().item() == pytest.approx(0.5395, abs=0.01)
    with pytest.raises(RuntimeError, match="support_mode='transform'"):
        rejection_sample(lambda m: torch.full((m, 1, 1), 5.0), space.inside, 10)


def test_reject_mode_posterior_samples_lie_in_the_support_and_the_mode_is_checked():
    dm = SimulatorDataModule(BoxUniform([-1.0, 0.0], [1.0, 5.0]), lambda t: t * 10.0, num_simulations=200, batch_size=40)
    pl.seed_everything(0)
    model = ivi.JCDen(latent_dim=2, data_shape=2, learn_model=False, hidden=(16,), aux_steps=1, support_mode="reject")
    trainer(4, limit_val_batches=0).fit(model, dm)
    with torch.no_grad():
        samples = model.sample_posterior(torch.tensor([[9.0, 45.0], [0.0, 25.0]]), 3000)
    assert samples.shape == (3000, 2, 2) and bool(model.parameter_space.inside(samples).all())
    with pytest.raises(ValueError, match="support_mode must be one of transform, reject"):
        ivi.JCDen(latent_dim=2, data_shape=2, learn_model=False, support_mode="clip")


def test_jc_den_denoiser_hidden_sizes_the_default_denoisers_only():
    model = ivi.JCDen(latent_dim=2, data_shape=3, learn_model=False, model_score="denoiser", hidden=(16,), denoiser_hidden=(32, 8))
    widths = lambda net: [m.out_features for m in net.modules() if isinstance(m, torch.nn.Linear)]
    assert widths(model.model_denoiser) == widths(model.denoiser) == [32, 8, 5]
    assert widths(model.encoder)[0] == 16


def test_jc_den_sampler_ema_averages_the_model_denoiser_and_is_checkpointed(tmp_path):
    """The diffusion sampler's denoiser is the exponential moving average of the model denoiser's
    weights after each of its updates (the first update copies them)."""

    class Record(pl.Callback):
        def __init__(self):
            self.weights = []

        def on_train_batch_end(self, trainer, model, *args):
            self.weights.append(model.model_denoiser.net[0].weight.detach().clone())

    dm = SimulatorDataModule(BoxUniform([-1.0], [1.0]), CountingSimulator(), num_simulations=200, batch_size=40)
    pl.seed_everything(0)
    model = ivi.JCDen(latent_dim=1, data_shape=1, learn_model=False, hidden=(8,), aux_steps=1, model_score="denoiser",
                      noise_std=0.01, max_noise_std=1.0, posterior_sampler="diffusion", diffusion_steps=5, sampler_ema=0.9)
    record = Record()
    fit = trainer(10, limit_val_batches=0, callbacks=[record], default_root_dir=tmp_path)  # one optimizer step per update
    fit.fit(model, dm)
    expected = record.weights[0]
    for weight in record.weights[1:]:
        expected = 0.9 * expected + 0.1 * weight
    average = model.model_denoiser_average.module.net[0].weight
    assert len(record.weights) == 5 and torch.allclose(average, expected, atol=1e-6)
    assert not torch.allclose(average, model.model_denoiser.net[0].weight)
    path = tmp_path / "ema.ckpt"
    fit.save_checkpoint(path)
    assert torch.equal(ivi.JCDen.load_from_checkpoint(path).model_denoiser_average.module.net[0].weight, average)
    with pytest.raises(ValueError, match="set posterior_sampler='diffusion'"):
        ivi.JCDen(latent_dim=1, data_shape=1, learn_model=False, sampler_ema=0.9)
    with pytest.raises(ValueError, match=re.escape("must lie in (0, 1), got 1.5")):
        ivi.JCDen(latent_dim=1, data_shape=1, learn_model=False, model_score="denoiser", noise_std=0.01,
                  max_noise_std=1.0, posterior_sampler="diffusion", sampler_ema=1.5)
