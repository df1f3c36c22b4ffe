"""Networks: implicit encoders, decoders, discriminators and denoisers."""

from ivi_lightning.nets import conv  # noqa: F401  (registers the "conv_small" and "conv" architectures)
from ivi_lightning.nets.joint import (  # also registers their factory builders
    DeterministicEncoder,
    JointDenoiser,
)
from ivi_lightning.nets.mlp import (
    MLP,
    Decoder,
    Denoiser,
    Discriminator,
    GaussianEncoder,
    ImplicitEncoder,
    LocationScaleEncoder,
    Maxout,
)

__all__ = [
    "MLP",
    "Decoder",
    "Denoiser",
    "Discriminator",
    "GaussianEncoder",
    "ImplicitEncoder",
    "LocationScaleEncoder",
    "Maxout",
    "DeterministicEncoder",
    "JointDenoiser",
]
