"""Networks: implicit encoders, decoders, discriminators and denoisers."""
from ivi_lightning.nets.mlp import MLP, Decoder, Denoiser, Discriminator, GaussianEncoder, ImplicitEncoder, LocationScaleEncoder
from ivi_lightning.nets.joint import DeterministicEncoder, JointDenoiser  # also registers their factory builders
from ivi_lightning.nets import conv  # noqa: F401  (registers the "conv_small" and "conv" architectures)

__all__ = ["MLP", "Decoder", "Denoiser", "Discriminator", "GaussianEncoder", "ImplicitEncoder", "LocationScaleEncoder", "DeterministicEncoder", "JointDenoiser"]
