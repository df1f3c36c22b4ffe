"""Scoring against exact answers."""
from ivi_lightning.evaluation.toy import (
    exact_posterior_grid,
    grid_log_marginal,
    js_divergence,
    latent_grid,
    log_joint_grid,
    posterior_js,
    sample_histogram,
)

__all__ = ["exact_posterior_grid", "grid_log_marginal", "js_divergence", "latent_grid", "log_joint_grid", "posterior_js", "sample_histogram"]
