"""Scoring against exact answers (2-D toys), AIS and IWAE log-likelihoods, FID, C2ST."""

from ivi_lightning.evaluation.ais import (
    AISResult,
    ais_log_marginal,
    annealed_importance_sampling,
    iwae_bound,
    temperature_schedule,
)
from ivi_lightning.evaluation.c2st import c2st
from ivi_lightning.evaluation.fid import build_fid, feature_statistics, fid_score, frechet_distance
from ivi_lightning.evaluation.toy import (
    exact_posterior_grid,
    grid_log_marginal,
    js_divergence,
    latent_grid,
    log_joint_grid,
    posterior_js,
    sample_histogram,
)

__all__ = [
    "AISResult",
    "ais_log_marginal",
    "annealed_importance_sampling",
    "build_fid",
    "c2st",
    "exact_posterior_grid",
    "feature_statistics",
    "fid_score",
    "frechet_distance",
    "grid_log_marginal",
    "iwae_bound",
    "js_divergence",
    "latent_grid",
    "log_joint_grid",
    "posterior_js",
    "sample_histogram",
    "temperature_schedule",
]
