"""Networks: implicit encoders, decoders, discriminators and denoisers."""
from ivi_lightning.nets.mlp import MLP, Decoder, Denoiser, Discriminator, GaussianEncoder, ImplicitEncoder

__all__ = ["MLP", "Decoder", "Denoiser", "Discriminator", "GaussianEncoder", "ImplicitEncoder"]
