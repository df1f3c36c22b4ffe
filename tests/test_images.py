"""Images: MNIST and CelebA data modules on tiny fixtures, convolutional networks, image
callbacks, and every algorithm training one step on both (Trainer and CLI)."""
import gzip
import warnings
from pathlib import Path

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.loggers import TensorBoardLogger

import ivi_lightning as ivi
from datamodules import CelebADataModule, MNISTDataModule
from datamodules.mnist import parse_idx
from ivi_lightning.callbacks import LatentInterpolation, LatentScatter, ReconstructionGrid, SampleGrid
from ivi_lightning.algorithms import ImplicitVI
from ivi_lightning.cli import IVICLI
from ivi_lightning.cli import main as cli_main
from ivi_lightning.nets import conv
from ivi_lightning.nets.factory import build_network

warnings.filterwarnings("ignore", ".*does not have many workers.*")
warnings.filterwarnings("ignore", ".*LeafSpec.*")

ROOT = Path(__file__).resolve().parents[1]
ALGORITHMS = [ivi.VAE, ivi.PCAdv, ivi.PCDen, ivi.JCAdv, ivi.JCDen, ivi.JCAdvRMD]
SMALL = dict(architecture="conv_small", hidden=(16,), noise_dim=2, latent_dim=2)


# --- fixtures ---------------------------------------------------------------------------------
def _idx_bytes(array: np.ndarray) -> bytes:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_mnist(root: Path, n_train: int = 24, n_test: int = 8, gz: bool = False) -> Path:
    """Tiny MNIST in torchvision's raw layout: grey images (so binarisation is random) and labels."""
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(60, 200, size=(n, 28, 28))
        for name, array in ((f"{prefix}-images-idx3-ubyte", images), (f"{prefix}-labels-idx1-ubyte", np.arange(n) % 10)):
            data = _idx_bytes(array)
            if gz:
                (raw / (name + ".gz")).write_bytes(gzip.compress(data))
            else:
                (raw / name).write_bytes(data)
    return root


def write_celeba(root: Path, counts=(4, 2, 2)) -> Path:
    """Tiny CelebA: 178x218 JPEGs, red in a centred 160 square (holding the 148 crop), blue outside it."""
    from PIL import Image

    folder = root / "celeba" / "img_align_celeba"
    folder.mkdir(parents=True)
    lines, number = [], 0
    for code, count in enumerate(counts):
        for _ in range(count):
            number += 1
            image = np.zeros((218, 178, 3), dtype=np.uint8)
            image[..., 2] = 255
            top, left = (218 - 160) // 2, (178 - 160) // 2
            image[top : top + 160, left : left + 160] = (220, 20, 20 + 10 * number)
            Image.fromarray(image).save(folder / f"{number:06d}.jpg", quality=100, subsampling=0)
            lines.append(f"{number:06d}.jpg {code}")
    (root / "celeba" / "list_eval_partition.txt").write_text("\n".join(lines) + "\n")
    return root


@pytest.fixture(scope="module")
def mnist_dir(tmp_path_factory):
    return write_mnist(tmp_path_factory.mktemp("mnist"))


@pytest.fixture(scope="module")
def celeba_dir(tmp_path_factory):
    return write_celeba(tmp_path_factory.mktemp("celeba"))


def _trainer(tmp_path, **kwargs) -> pl.Trainer:
    defaults = dict(accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path)
    return pl.Trainer(**{**defaults, **kwargs})


# --- MNIST ------------------------------------------------------------------------------------
@pytest.mark.parametrize("gz", [False, True])
def test_mnist_shapes_ranges_and_split(tmp_path, gz):
    dm = MNISTDataModule(str(write_mnist(tmp_path, gz=gz)), batch_size=4, val_size=8)
    dm.setup("fit")
    dm.setup("test")
    assert dm.data_shape == (1, 28, 28)
    assert (len(dm.train_set), len(dm.val_set), len(dm.test_set)) == (16, 8, 8)
    for loader, n in ((dm.train_dataloader(), 4), (dm.val_dataloader(), 2), (dm.test_dataloader(), 2)):
        batches = list(loader)
        assert len(batches) == n
        x, y = batches[0]
        assert x.shape == (4, 1, 28, 28) and x.dtype == torch.float32 and y.dtype == torch.int64
        assert set(x.unique().tolist()) == {0.0, 1.0}
    grey = MNISTDataModule(str(tmp_path), batch_size=4, val_size=8, binarize="none")
    grey.setup("fit")
    x, _ = next(iter(grey.train_dataloader()))
    assert 60 / 255 - 1e-6 <= x.min() and x.max() <= 200 / 255 + 1e-6 and len(x.unique()) > 2
    # the split is seeded: the same seed gives the same held-out labels order
    again = MNISTDataModule(str(tmp_path), batch_size=4, val_size=8)
    again.setup("fit")
    assert torch.equal(dm.val_set.tensors[1], again.val_set.tensors[1])


def test_dynamic_binarization_changes_but_evaluation_binarization_is_fixed(mnist_dir):
    dm = MNISTDataModule(str(mnist_dir), batch_size=4, val_size=8)
    dm.setup("fit")
    indices = torch.arange(4)
    first, again_first = dm.train_set[indices][0], dm.train_set[indices][0]
    assert torch.equal(first, again_first), "a batch's draw depends only on the seed and its indices (exact resume)"
    assert not torch.equal(first, dm.train_set[indices.flip(0)][0].flip(0)), "another batch: another draw"
    assert ((first == 0) | (first == 1)).all() and 0 < first.mean() < 1
    # across epochs through the loader: the same images, different draws (sum over the whole set by label order)
    def epoch(number):
        loader = dm.train_dataloader()
        loader.sampler.set_epoch(number)
        return torch.cat([x for x, _ in loader]).sum(0)

    assert torch.equal(epoch(0), epoch(0)) and not torch.equal(epoch(0), epoch(1))
    # validation: identical across passes and across data module instances with the same seed
    val = lambda m: torch.cat([x for x, _ in m.val_dataloader()])
    other = MNISTDataModule(str(mnist_dir), batch_size=4, val_size=8)
    other.setup("fit")
    assert torch.equal(val(dm), val(dm)) and torch.equal(val(dm), val(other))
    reseeded = MNISTDataModule(str(mnist_dir), batch_size=4, val_size=8, seed=1)
    reseeded.setup("fit")
    assert not torch.equal(val(dm), val(reseeded))


def test_mnist_missing_and_corrupt_files_raise_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"(?s)MNIST not found in .*MNIST/raw.*train-images-idx3-ubyte.*download=True"):
        MNISTDataModule(str(tmp_path / "nowhere")).setup("fit")
    root = write_mnist(tmp_path / "broken")
    path = root / "MNIST" / "raw" / "train-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(ValueError, match="truncated or corrupt"):
        MNISTDataModule(str(root), val_size=8, batch_size=4).setup("fit")
    path.write_bytes(b"\x12\x34\x56\x78" + bytes(20))
    with pytest.raises(ValueError, match="not an IDX file"):
        MNISTDataModule(str(root), val_size=8, batch_size=4).setup("fit")
    with pytest.raises(ValueError, match="binarize"):
        MNISTDataModule(binarize="threshold")
    with pytest.raises(ValueError, match="val_size"):
        MNISTDataModule(str(write_mnist(tmp_path / "small")), val_size=100).setup("fit")


def test_mnist_download_delegates_to_torchvision(tmp_path, monkeypatch):
    import torchvision.datasets

    calls = []

    def fake_mnist(root, train=True, download=False):
        calls.append((root, train, download))
        if not (Path(root) / "MNIST").exists():
            write_mnist(Path(root))

    monkeypatch.setattr(torchvision.datasets, "MNIST", fake_mnist)
    dm = MNISTDataModule(str(tmp_path), download=True, val_size=8, batch_size=4)
    dm.setup("fit")  # without a Trainer: setup downloads what is missing
    assert calls and all(c[2] for c in calls) and len(dm.train_set) == 16


def test_parse_idx_reads_other_types():
    values = np.arange(6, dtype=">i4").reshape(2, 3)
    data = bytes([0, 0, 0x0C, 2]) + (2).to_bytes(4, "big") + (3).to_bytes(4, "big") + values.tobytes()
    assert parse_idx(data).tolist() == [[0, 1, 2], [3, 4, 5]]


# --- CelebA -----------------------------------------------------------------------------------
def test_celeba_shapes_ranges_crop_and_splits(celeba_dir):
    dm = CelebADataModule(str(celeba_dir), batch_size=2)
    dm.setup("fit")
    assert dm.data_shape == (3, 64, 64)
    assert [len(dm.dataset(s)) for s in ("train", "val", "test")] == [4, 2, 2]
    x = next(iter(dm.train_dataloader()))
    assert x.shape == (2, 3, 64, 64) and x.dtype == torch.float32
    assert 0.0 <= x.min() and x.max() <= 1.0
    # the centred 148 crop is all red: no blue border survives it
    assert x[:, 0].min() > 0.75 and x[:, 2].max() < 0.3
    assert len(list(dm.val_dataloader())) == 1 and len(list(dm.test_dataloader())) == 1
    small = CelebADataModule(str(celeba_dir), batch_size=2, image_size=32)
    assert small.data_shape == (3, 32, 32) and next(iter(small.val_dataloader())).shape == (2, 3, 32, 32)


def test_celeba_missing_files_raise_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"(?s)img_align_celeba.*list_eval_partition.txt.*download=True"):
        CelebADataModule(str(tmp_path)).setup("fit")
    root = write_celeba(tmp_path / "bad")
    (root / "celeba" / "list_eval_partition.txt").write_text("000001.jpg train\n")
    with pytest.raises(ValueError, match=r"line 1.*<0\|1\|2>"):
        CelebADataModule(str(root)).setup("fit")
    (root / "celeba" / "list_eval_partition.txt").write_text("999999.jpg 0\n")
    with pytest.raises(FileNotFoundError, match="999999.jpg"):
        CelebADataModule(str(root)).setup("fit")


# --- networks ---------------------------------------------------------------------------------
@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 64, 64)])
@pytest.mark.parametrize("architecture", ["conv_small", "conv"])
def test_conv_networks_every_kind(shape, architecture):
    x, z = torch.rand(2, *shape), torch.randn(2, 3)
    opts = dict(data_shape=shape, latent_dim=3, hidden=(8,), noise_dim=2, noise_injection="both", noise_std=0.1)
    assert build_network("implicit_encoder", architecture, shared=opts)(x).shape == (2, 3)
    mean, std = build_network("gaussian_encoder", architecture, shared=opts).moments(x)
    assert mean.shape == std.shape == (2, 3) and bool((std > 0).all())
    assert build_network("decoder", architecture, shared=opts)(z).shape == (2, *shape)
    assert build_network("discriminator", architecture, shared=opts)(x, z).shape == (2,)
    assert build_network("denoiser", architecture, shared=opts)(z, x).shape == (2, 3)
    assert [t.shape for t in build_network("joint_denoiser", architecture, shared=opts)(x, z)] == [x.shape, z.shape]
    assert build_network("deterministic_encoder", architecture, shared=opts)(x).shape == (2, 3)
    with pytest.raises(TypeError, match=r"'discriminator' network of architecture '\w+' takes no option 'hiden'"):
        build_network("discriminator", architecture, shared=opts, hiden=(8,))  # a misspelt option names itself


@pytest.mark.parametrize("injection", ["input", "hidden", "both"])
def test_conv_implicit_encoder_noise_injection(injection):
    enc = conv.ConvImplicitEncoder((1, 28, 28), 2, hidden=(8,), noise_dim=3, noise_injection=injection)
    x = torch.rand(1, 1, 28, 28).expand(64, 1, 28, 28)
    assert enc(x).std(0).min() > 0, "the same x must give different z"
    assert (enc.features.noise_maps is not None) == (injection != "input")


def test_conv_networks_reject_unsupported_shapes():
    for shape in [(1, 27, 27), (3, 64, 32), 784, (1, 36, 36)]:
        with pytest.raises(ValueError, match="architecture='mlp'"):
            build_network("decoder", "conv_small", data_shape=shape, latent_dim=2)
    with pytest.raises(ValueError, match="noise_injection"):
        build_network("implicit_encoder", "conv_small", data_shape=(1, 28, 28), latent_dim=2, noise_injection="output")


# --- algorithms -------------------------------------------------------------------------------
def _options(cls, gaussian: bool) -> dict:
    options = dict(SMALL, likelihood_family="gaussian" if gaussian else "bernoulli")
    if cls is ivi.JCAdvRMD:
        options.update(model_hidden=(8,), model_noise_dim=2, unroll_steps=1)
    return options


@pytest.mark.parametrize("dataset", ["mnist", "celeba"])
@pytest.mark.parametrize("cls", ALGORITHMS, ids=lambda c: c.__name__)
def test_fast_dev_run_on_images(cls, dataset, mnist_dir, celeba_dir, tmp_path):
    if dataset == "mnist":
        dm = MNISTDataModule(str(mnist_dir), batch_size=4, val_size=8)
    else:
        dm = CelebADataModule(str(celeba_dir), batch_size=2)
    model = cls(data_shape=dm.data_shape, **_options(cls, gaussian=dataset == "celeba"))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    _trainer(tmp_path, fast_dev_run=True).fit(model, dm)
    changed = {k for k, v in model.state_dict().items() if not torch.equal(v, before[k])}
    assert any(k.startswith("encoder.features.convs") for k in changed), "the conv encoder was not updated"
    assert any(k.startswith("likelihood.") for k in changed), "the model was not updated"


def test_image_callbacks_write_tensorboard_and_pngs(mnist_dir, tmp_path):
    dm = MNISTDataModule(str(mnist_dir), batch_size=4, val_size=8)
    model = ivi.PCAdv(data_shape=dm.data_shape, aux_steps=1, **SMALL)  # two optimizer steps per batch
    callbacks = [
        SampleGrid(every_n_steps=2, num_samples=4, nrow=2),
        ReconstructionGrid(every_n_steps=2, num_examples=4, nrow=2),
        LatentInterpolation(every_n_steps=2, num_rows=2, steps=3),
        LatentScatter(every_n_steps=2, num_points=8),
    ]
    logger = TensorBoardLogger(str(tmp_path), name="tb")
    added, original = [], logger.experiment.add_image

    def spy(tag, image, global_step=None, *args, **kwargs):
        added.append((tag, tuple(image.shape), global_step))
        return original(tag, image, global_step, *args, **kwargs)

    logger.experiment.add_image = spy
    _trainer(tmp_path, logger=logger, max_steps=4, limit_val_batches=1, val_check_interval=2, num_sanity_val_steps=0, callbacks=callbacks).fit(model, dm)
    tags = {tag for tag, _, _ in added}
    assert tags == {"images/samples", "images/reconstructions", "images/interpolations", "images/latent_scatter"}
    assert {step for _, _, step in added} == {2, 4}
    shapes = {tag: shape for tag, shape, _ in added}
    assert shapes["images/samples"] == (3, 2 * 30 + 2, 2 * 30 + 2)  # 2x2 grid of 28px images, 2px padding
    assert shapes["images/reconstructions"] == (3, 4 * 30 + 2, 2 * 30 + 2)  # data row, reconstruction row, twice
    assert shapes["images/interpolations"] == (3, 2 * 30 + 2, 3 * 30 + 2)
    for cb in callbacks:
        assert cb.last_paths and all(Path(p).is_file() for p in cb.last_paths), type(cb).__name__
        assert Path(cb.last_paths[0]).parent == Path(logger.log_dir)
    first_val_x, first_val_y = next(iter(dm.val_dataloader()))  # limit_val_batches=1: one batch seen
    assert torch.equal(callbacks[3].examples, first_val_x) and torch.equal(callbacks[3].labels, first_val_y)


def test_cli_trains_pc_adv_on_mnist_fixture(mnist_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    cli = cli_main([
        "fit", "--config", "configs/pc_adv/mnist.yaml", "--data.data_dir", str(mnist_dir), "--data.val_size", "8",
        "--data.batch_size", "4", "--trainer.fast_dev_run", "true", "--trainer.accelerator", "cpu",
        "--trainer.default_root_dir", str(tmp_path), "--model.init_args.hidden", "[16]",
    ])
    assert isinstance(cli.model, ivi.PCAdv) and cli.model.data_shape == (1, 28, 28)
    assert type(cli.model.encoder).__name__ == "ConvImplicitEncoder"


@pytest.mark.parametrize("config", sorted(str(p.relative_to(ROOT)) for p in ROOT.glob("configs/*/*.yaml") if p.stem.split("_")[0] in ("mnist", "celeba")))
def test_image_configs_parse_and_build(config, mnist_dir, celeba_dir, tmp_path, monkeypatch):
    """Every image config instantiates its model and data module (with small networks), data_shape linked."""
    monkeypatch.chdir(ROOT)
    data_dir = mnist_dir if "mnist" in config else celeba_dir
    args = ["--config", config, "--data.init_args.data_dir", str(data_dir), "--trainer.default_root_dir", str(tmp_path),
            "--trainer.accelerator", "cpu", "--model.init_args.architecture", "conv_small", "--model.init_args.hidden", "[8]"]
    cli = IVICLI(ImplicitVI, pl.LightningDataModule, subclass_mode_model=True, subclass_mode_data=True, run=False, args=args)
    assert cli.model.data_shape == cli.datamodule.data_shape == ((1, 28, 28) if "mnist" in config else (3, 64, 64))
    expected = {"vae": "VAE", "pc_adv": "PCAdv", "pc_den": "PCDen", "jc_adv": "JCAdv", "jc_den": "JCDen", "jc_adv_rmd": "JCAdvRMD"}
    assert type(cli.model).__name__ == expected[Path(config).parent.name]


@pytest.mark.parametrize("jobs", ["1", "2"])  # 2: each implicit row trains beside its same-time VAE (separate processes)
def test_mnist_table_prints_same_time_rows(jobs, tmp_path, capsys, monkeypatch):
    """benchmarks/mnist_table.py end to end on a fixture, with the same-time VAE columns (checks the script, not the numbers)."""
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    import mnist_table

    data = write_mnist(tmp_path / "data", n_train=5000 + 130, n_test=4)  # 5,000 go to validation: one training batch of 128 per epoch
    mnist_table.main(["--data_dir", str(data), "--algorithms", "VAE", "PCDen+LS", "--latent_dims", "2", "--updates", "3", "--ais_examples", "2",
                      "--num_temperatures", "3", "--num_chains", "1", "--leapfrog_steps", "1", "--iwae_samples", "2", "--time_matched", "--jobs", jobs])
    rows = [line.strip("|").split("|") for line in capsys.readouterr().out.splitlines() if line.startswith(("| VAE | 2", "| PCDen+LS | 2"))]
    assert len(rows) == 2 and all(len(row) == 12 for row in rows), rows
    assert rows[0][6].strip() == "—" and rows[1][6].strip() not in ("—", "")  # the implicit row has its same-time VAE
    assert int(rows[1][2]) == 3  # batches trained


def test_mnist_table_reports_a_diverged_row_and_goes_on(tmp_path, capsys, monkeypatch):
    """A row whose training hits a non-finite loss is printed as diverged; the other rows still run."""
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    import mnist_table
    from ivi_lightning.training import NonFiniteLossError

    run = mnist_table.run

    def diverging(name, *args, **kwargs):
        if name == "PCDen+LS":
            raise NonFiniteLossError("PCDen: the denoiser update at global step 7 has a non-finite loss or gradient (loss=nan); training stopped")
        return run(name, *args, **kwargs)

    monkeypatch.setattr(mnist_table, "run", diverging)
    data = write_mnist(tmp_path / "data", n_train=5000 + 130, n_test=4)
    mnist_table.main(["--data_dir", str(data), "--algorithms", "PCDen+LS", "VAE", "--latent_dims", "2", "--updates", "2", "--ais_examples", "2",
                      "--num_temperatures", "3", "--num_chains", "1", "--leapfrog_steps", "1", "--iwae_samples", "2", "--time_matched"])
    out = capsys.readouterr().out
    assert "| PCDen+LS | 2 | — | — | diverged: PCDen: the denoiser update at global step 7 has a non-finite loss or gradient (loss=nan) |" in out
    vae_row = next(line for line in out.splitlines() if line.startswith("| VAE | 2"))
    assert vae_row.count("|") == 13 and "diverged" not in vae_row
