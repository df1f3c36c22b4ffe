"""Callbacks: exact-posterior scoring and plots (more as data modules land)."""
from ivi_lightning.callbacks.toy import ExactPosteriorCallback

__all__ = ["ExactPosteriorCallback"]
