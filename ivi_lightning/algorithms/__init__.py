"""One LightningModule per algorithm; each ``training_step`` is the algorithm's update schedule."""
from ivi_lightning.algorithms.base import ImplicitVI
from ivi_lightning.algorithms.pc_adv import PCAdv
from ivi_lightning.algorithms.pc_den import PCDen
from ivi_lightning.algorithms.vae import VAE

__all__ = ["ImplicitVI", "PCAdv", "PCDen", "VAE"]
