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
from ivi_lightning.evaluation.ais import (  # noqa: E402
    AISResult,
    ais_log_marginal,
    annealed_importance_sampling,
    iwae_bound,
    temperature_schedule,
)
from ivi_lightning.evaluation.fid import build_fid, feature_statistics, fid_score, frechet_distance  # noqa: E402

__all__ += [
    "AISResult",
    "ais_log_marginal",
    "annealed_importance_sampling",
    "build_fid",
    "feature_statistics",
    "fid_score",
    "frechet_distance",
    "iwae_bound",
    "temperature_schedule",
]
