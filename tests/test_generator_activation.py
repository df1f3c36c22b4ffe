"""The generator activation reaches the encoder and decoder, not the discriminator."""
import pytest
from torch import nn

from ivi_lightning import PCAdv, VAE


def activations(module):
    return {type(m) for m in module.modules() if isinstance(m, (nn.ReLU, nn.SiLU))}


def test_generator_activation_applies_to_encoder_and_decoder_only():
    model = PCAdv(latent_dim=2, data_shape=4, hidden=(8,), generator_activation="relu")
    assert activations(model.encoder) == {nn.ReLU} and activations(model.likelihood) == {nn.ReLU}
    assert activations(model.discriminator) == {nn.SiLU}
    assert activations(VAE(latent_dim=2, data_shape=4, hidden=(8,), generator_activation="relu").encoder) == {nn.ReLU}


def test_unknown_generator_activation_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown activation 'swish'; choose one of"):
        PCAdv(latent_dim=2, data_shape=4, generator_activation="swish")
