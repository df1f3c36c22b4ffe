"""Joint-contrastive family: JCAdv (with ALI/BiGAN), JCDen, JCAdvRMD, JCHybrid."""
import math
import warnings

import pytest
import pytorch_lightning as pl
import torch
from torch import nn

import ivi_lightning as ivi
from datamodules import ExplainingAwayLikelihood, Toy2DDataModule
from ivi_lightning.evaluation import posterior_js

warnings.filterwarnings("ignore", ".*does not have many workers.*")
warnings.filterwarnings("ignore", ".*LeafSpec.*")


class Simulator(ivi.Likelihood):
    """The explaining-away likelihood as a sample-only simulator: no log_prob."""

    def __init__(self) -> None:
        super().__init__()
        self.inner = ExplainingAwayLikelihood()

    def sample(self, z):
        return self.inner.sample(z)


def _trainer(**kwargs) -> pl.Trainer:
    defaults = dict(accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
    return pl.Trainer(**{**defaults, **kwargs})


SMALL = dict(hidden=(16,), noise_dim=2)


@pytest.mark.parametrize(
    "cls, dataset, options",
    [
        (ivi.JCAdv, "explaining_away", dict(learn_model=False)),
        (ivi.JCAdv, "ring", dict(likelihood_family="gaussian")),
        (ivi.JCAdv, "ring", dict(likelihood_family="gaussian", loss="ali")),
        (ivi.JCAdv, "grid", dict(loss="bigan", likelihood=ivi.ImplicitLikelihood(2, 2, 2, (8,)))),
        (ivi.JCDen, "explaining_away", dict(learn_model=False)),
        (ivi.JCDen, "explaining_away", dict(learn_model=False, likelihood=Simulator(), prior=ivi.NormalPrior(2, 2.0))),
        (ivi.JCDen, "ring", dict(likelihood_family="gaussian")),
        (ivi.JCAdvRMD, "ring", dict(unroll_steps=2)),
        (ivi.JCHybrid, "explaining_away", dict(learn_model=False, likelihood=Simulator(), prior=ivi.NormalPrior(2, 2.0), score_penalty=0.1)),
    ],
)
def test_fast_dev_run(cls, dataset, options):
    data = Toy2DDataModule(dataset, num_samples=256, batch_size=32)
    model = cls(latent_dim=2, data_shape=data.data_shape, **SMALL, **options)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    _trainer(fast_dev_run=True).fit(model, data)
    changed = {k for k, v in model.state_dict().items() if not torch.equal(v, before[k])}
    assert any(k.startswith("encoder.") for k in changed), "the encoder was not updated"
    if options.get("learn_model", True):
        assert any(k.startswith("likelihood.") for k in changed), "the model was not updated"


def test_bad_inputs_get_clear_errors():
    implicit = ivi.ImplicitLikelihood(2, 2, 2, (8,))
    with pytest.raises(ValueError, match="JCAdvRMD"):
        ivi.JCAdv(latent_dim=2, data_shape=2, likelihood=implicit)
    with pytest.raises(ValueError, match="reparameterised"):
        ivi.JCAdv(latent_dim=2, data_shape=2, loss="ali")  # default Bernoulli likelihood
    with pytest.raises(ValueError, match="loss must be"):
        ivi.JCAdv(latent_dim=2, data_shape=2, loss="wgan")
    with pytest.raises(ValueError, match="unroll_steps"):
        ivi.JCAdvRMD(latent_dim=2, data_shape=2, unroll_steps=-1)
    with pytest.raises(ValueError, match="noise levels must be positive"):
        ivi.JCDen(latent_dim=2, data_shape=2, data_noise_std=0.0)
    with pytest.raises(ValueError, match="JCAdvRMD"):
        ivi.JCDen(latent_dim=2, data_shape=2, likelihood=implicit)
    with pytest.raises(ValueError, match="mix"):
        ivi.JCHybrid(latent_dim=2, data_shape=2, mix=1.5, learn_model=False)


@pytest.mark.parametrize("penalty", [-0.1, float("inf"), float("nan"), True, "0.1"])
def test_bad_score_penalty_is_refused(penalty):
    with pytest.raises(ValueError, match=r"score_penalty is a weight, ≥ 0 \(0: none; e.g. 0.1\), got"):
        ivi.JCHybrid(latent_dim=2, data_shape=2, score_penalty=penalty, learn_model=False)


class LinearGaussianEncoder(nn.Module):
    """q(z|x) = N(a x, s²), fixed."""

    def __init__(self, a: float, s: float) -> None:
        super().__init__()
        self.a, self.s = a, s

    def forward(self, x):
        return self.a * x + self.s * torch.randn_like(x)


def _normal_log_prob(u, mean, std):
    return (-0.5 * ((u - mean) / std) ** 2 - math.log(std) - 0.5 * math.log(2 * math.pi)).sum(-1)


def test_jcadv_discriminator_learns_analytic_joint_log_ratio():
    # q(x, z) = N(x; 0, 1) N(z; a x, s²) against p(x, z) = N(z; 0, 1) N(x; b z, t²): s(x, z) in closed form.
    a, s, b, t = 0.8, 0.5, -0.6, 0.7
    decoder = nn.Linear(1, 1, bias=False)
    decoder.weight.data.fill_(b)
    likelihood = ivi.GaussianLikelihood(decoder, 1, init_std=t)
    model = ivi.JCAdv(latent_dim=1, data_shape=1, prior=ivi.StandardNormalPrior(1), likelihood=likelihood,
                      encoder=LinearGaussianEncoder(a, s), learn_model=False, hidden=(64, 64), aux_steps=1)
    model.optimize = lambda opt, loss: (opt.zero_grad(), loss.backward(), opt.step())  # no Trainer needed
    opt = torch.optim.Adam(model.discriminator.parameters(), lr=3e-3)
    for _ in range(800):
        model.discriminator_step(torch.randn(512, 1), opt)

    def log_ratio(x, z):
        return _normal_log_prob(x, 0.0, 1.0) + _normal_log_prob(z, a * x, s) - _normal_log_prob(z, 0.0, 1.0) - _normal_log_prob(x, b * z, t)

    with torch.no_grad():
        x_q = torch.randn(2000, 1)
        z_q = model.encoder(x_q)
        x_p, z_p = model.sample_model(2000)
        x, z = torch.cat([x_q, x_p]), torch.cat([z_q, z_p])  # where both joints have mass
        error = (model.discriminator(x, z) - log_ratio(x, z)).abs().median()
        spread = log_ratio(x, z).std()
    assert error < 0.15 * spread, f"median |T − s| = {error:.3f} (s has std {spread:.2f})"


def test_rmd_hypergradient_matches_finite_differences():
    torch.manual_seed(0)
    model = ivi.JCAdvRMD(latent_dim=1, data_shape=1, hidden=(4,), noise_dim=1, model_hidden=(3,), model_noise_dim=1,
                         unroll_steps=2, unroll_lr=0.5).double()
    x_q, z_q = torch.randn(16, 1, dtype=torch.float64), torch.randn(16, 1, dtype=torch.float64)
    weight = model.likelihood.net[0].weight

    def loss() -> torch.Tensor:
        torch.manual_seed(1)  # the same model noise at every θ
        return model.unrolled_model_loss(x_q, z_q)

    (grad,) = torch.autograd.grad(loss(), weight)
    eps = 1e-6
    with torch.no_grad():
        weight[0, 0] += eps
        up = loss().item()
        weight[0, 0] -= 2 * eps
        down = loss().item()
        weight[0, 0] += eps
    numeric = (up - down) / (2 * eps)
    assert abs(grad[0, 0].item()) > 1e-6, "the hypergradient vanished: θ does not reach the unrolled logit"
    assert abs(grad[0, 0].item() - numeric) < 1e-6 * max(1.0, abs(numeric)), f"autograd {grad[0, 0].item():.8g} vs finite differences {numeric:.8g}"
    # The discriminator's own parameters are constants of the unroll: no gradient reaches them.
    assert all(p.grad is None for p in model.discriminator.parameters())


def _js_after_training(cls, max_steps: int, **options) -> float:
    pl.seed_everything(0)
    data = Toy2DDataModule("explaining_away", num_samples=20000, batch_size=256)
    data.setup()
    model = cls(latent_dim=2, data_shape=1, learn_model=False, hidden=(64, 64), **options)
    _trainer(max_steps=max_steps, limit_val_batches=0).fit(model, data)
    js = posterior_js(model.sample_posterior, data.prior, data.likelihood, data.evaluation_points, 20000, data.latent_extent)
    return float(js.mean())


@pytest.fixture(scope="module")
def vae_js() -> float:
    # The VAE gets as many optimizer steps as the others take in all (so more encoder updates).
    return _js_after_training(ivi.VAE, STEPS)


STEPS = 6000


def test_likelihood_free_jcadv_beats_gaussian_vae(vae_js):
    js = _js_after_training(ivi.JCAdv, STEPS, prior=ivi.NormalPrior(2, 2.0), likelihood=Simulator())
    assert js < vae_js, f"JCAdv JS {js:.4f} vs VAE {vae_js:.4f}"


def test_likelihood_free_jcden_beats_gaussian_vae(vae_js):
    js = _js_after_training(ivi.JCDen, STEPS, prior=ivi.NormalPrior(2, 2.0), likelihood=Simulator(), data_noise_std=0.01)
    assert js < vae_js, f"JCDen JS {js:.4f} vs VAE {vae_js:.4f}"


def test_rmd_needs_the_unroll_for_a_model_gradient():
    # K = 0 plugs in the current discriminator: E_q[T_φ] does not depend on θ; K = 1 does.
    torch.manual_seed(0)
    x_q, z_q = torch.randn(8, 2), torch.randn(8, 2)
    for steps, reaches in ((0, False), (1, True)):
        model = ivi.JCAdvRMD(latent_dim=2, data_shape=2, hidden=(4,), model_hidden=(4,), unroll_steps=steps)
        loss = model.unrolled_model_loss(x_q, z_q)
        grads = torch.autograd.grad(loss, list(model.likelihood.parameters()), allow_unused=True) if loss.requires_grad else [None]
        assert any(g is not None and g.abs().sum() > 0 for g in grads) == reaches, f"K={steps}"
    with pytest.raises(ValueError, match="model_gan_weight"):
        ivi.JCAdvRMD(latent_dim=2, data_shape=2, model_gan_weight=-1.0)


MIXTURE_CONFIGS = ("configs/jc_adv/ring_ali.yaml", "configs/jc_adv/ring_ali_components.yaml", "configs/jc_adv/grid_ali.yaml",
                   "configs/jc_adv/grid_ali_components.yaml", "configs/jc_adv/grid_ali_maxout.yaml", "configs/jc_adv_rmd/ring.yaml",
                   "configs/jc_adv_rmd/grid.yaml")


@pytest.mark.parametrize("config", MIXTURE_CONFIGS)
def test_mixture_configs_run(config, tmp_path, monkeypatch):
    # The shipped settings of docs/benchmarks/implicit_models.md (table b of benchmarks/jc_tables.py) parse and train.
    import pathlib

    from ivi_lightning.cli import main as cli_main

    monkeypatch.chdir(pathlib.Path(__file__).resolve().parents[1])
    cli_main(["fit", "--config", config, "--trainer.fast_dev_run", "2", "--trainer.default_root_dir", str(tmp_path), "--model.init_args.hidden", "[16]"])
