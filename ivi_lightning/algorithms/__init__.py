"""One LightningModule per algorithm; each ``training_step`` is the algorithm's update schedule."""

from ivi_lightning.algorithms.base import ImplicitVI
from ivi_lightning.algorithms.jc_adv import JCAdv
from ivi_lightning.algorithms.jc_adv_rmd import JCAdvRMD
from ivi_lightning.algorithms.jc_den import JCDen
from ivi_lightning.algorithms.jc_hybrid import JCHybrid
from ivi_lightning.algorithms.pc_adv import PCAdv
from ivi_lightning.algorithms.pc_den import PCDen
from ivi_lightning.algorithms.vae import VAE

__all__ = ["ImplicitVI", "PCAdv", "PCDen", "VAE", "JCAdv", "JCDen", "JCAdvRMD", "JCHybrid"]
