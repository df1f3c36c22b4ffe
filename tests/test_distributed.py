"""Two CPU processes (gloo): gradients are synchronised and each rank draws its own noise."""
import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.strategies import DDPStrategy

from datamodules import Toy2DDataModule
from ivi_lightning import PCAdv


class RecordNoise(pl.Callback):
    def on_train_end(self, trainer, pl_module):
        noise = torch.randn(4)  # the rank's stream after training, offset by rank
        gathered = trainer.strategy.all_gather(noise)
        params = torch.cat([p.detach().flatten() for p in pl_module.parameters()])
        all_params = trainer.strategy.all_gather(params)
        if trainer.global_rank == 0:
            torch.save({"noise": gathered, "params": all_params}, trainer.default_root_dir + "/ddp.pt")


def test_ddp_two_processes_sync_parameters_and_differ_in_noise(tmp_path):
    pl.seed_everything(0)
    dm = Toy2DDataModule("explaining_away", num_samples=1024, batch_size=32)
    model = PCAdv(latent_dim=2, data_shape=1, learn_model=False, hidden=(8,))
    trainer = pl.Trainer(
        max_steps=8, accelerator="cpu", devices=2, strategy=DDPStrategy(find_unused_parameters=True, start_method="spawn"),
        logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        limit_val_batches=0, default_root_dir=str(tmp_path), callbacks=[RecordNoise()],
    )
    trainer.fit(model, dm)
    result = torch.load(tmp_path / "ddp.pt")
    noise, params = result["noise"], result["params"]
    assert not torch.allclose(noise[0], noise[1]), "both ranks drew the same noise"
    torch.testing.assert_close(params[0], params[1], rtol=0, atol=1e-6)


def test_plain_ddp_is_refused_with_the_fix(tmp_path):
    dm = Toy2DDataModule("explaining_away", num_samples=256, batch_size=32)
    model = PCAdv(latent_dim=2, data_shape=1, learn_model=False, hidden=(8,))
    trainer = pl.Trainer(max_steps=1, accelerator="cpu", devices=1, strategy=DDPStrategy(), logger=False,
                         enable_checkpointing=False, enable_progress_bar=False, default_root_dir=str(tmp_path))
    with pytest.raises(ValueError, match="ddp_find_unused_parameters_true"):
        trainer.fit(model, dm)
