"""Classifier two-sample test (C2ST), as sbibm scores posterior samples against reference ones."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def _classifier(dim: int) -> nn.Module:
    width = 10 * dim
    net = nn.Sequential(
        nn.Linear(dim, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU(), nn.Linear(width, 1)
    )
    linears = [layer for layer in net if isinstance(layer, nn.Linear)]
    for layer in linears:  # scikit-learn's initialisation: uniform within ±sqrt(6 / (fan_in + fan_out))
        bound = (6.0 / (layer.in_features + layer.out_features)) ** 0.5
        nn.init.uniform_(layer.weight, -bound, bound)
        nn.init.uniform_(layer.bias, -bound, bound)
    return net


def _fit_and_score(
    train_x: Tensor,
    train_y: Tensor,
    test_x: Tensor,
    test_y: Tensor,
    generator: torch.Generator,
    max_epochs: int,
    batch_size: int = 200,
    lr: float = 1e-3,
    weight_decay: float = 1e-4,
    tol: float = 1e-4,
    patience: int = 10,
) -> float:
    """Train the classifier as scikit-learn's ``MLPClassifier`` does by default (Adam, batches of
    200, L2 1e-4, stop once the training loss has not improved by ``tol`` for ``patience`` epochs)."""
    torch.manual_seed(int(torch.randint(2**31, (1,), generator=generator)))
    net = _classifier(train_x.shape[1])
    optimizer = torch.optim.Adam(net.parameters(), lr=lr)
    best, stale, n = float("inf"), 0, train_x.shape[0]
    for _ in range(max_epochs):
        total = 0.0
        for idx in torch.randperm(n, generator=generator).split(batch_size):
            loss = F.binary_cross_entropy_with_logits(net(train_x[idx]).squeeze(1), train_y[idx])
            penalty = (
                0.5
                * weight_decay
                * sum(p.pow(2).sum() for name, p in net.named_parameters() if name.endswith("weight"))
                / len(idx)
            )
            optimizer.zero_grad(set_to_none=True)
            (loss + penalty).backward()
            optimizer.step()
            total += loss.item() * len(idx)
        total /= n
        if total > best - tol:
            stale += 1
            if stale >= patience:
                break
        else:
            stale = 0
        best = min(best, total)
    with torch.no_grad():
        return ((net(test_x).squeeze(1) > 0).float() == test_y).float().mean().item()


def c2st(
    reference: Tensor, samples: Tensor, folds: int = 5, seed: int = 1, max_epochs: int = 10_000
) -> float:
    """Cross-validated accuracy of a classifier telling ``samples`` from ``reference``.

    sbibm's definition: both sets z-scored with the reference's mean and std; an MLP with two
    hidden ReLU layers of ``10 · dim`` units; the mean accuracy over ``folds`` shuffled folds.
    0.5 means indistinguishable, 1.0 fully separable. Trained in torch (no scikit-learn needed),
    with scikit-learn's default optimisation settings; the random streams are left untouched.

    Args:
        reference: samples of the reference distribution, ``[n, dim]``.
        samples: samples to score, ``[m, dim]``.
        folds: cross-validation folds.
        seed: seed of the folds and of the classifiers.
        max_epochs: cap on each classifier's training epochs.

    >>> g = torch.Generator().manual_seed(0)
    >>> a, b = torch.randn(500, 2, generator=g), torch.randn(500, 2, generator=g)
    >>> 0.4 < c2st(a, b, folds=2) < 0.6, c2st(a, b + 10.0, folds=2) > 0.99
    (True, True)
    """
    if reference.dim() != 2 or samples.dim() != 2 or reference.shape[1] != samples.shape[1]:
        raise ValueError(
            "c2st takes two sample sets [n, dim] of the same dim, "
            f"got {list(reference.shape)} and {list(samples.shape)}"
        )
    if not (bool(torch.isfinite(reference).all()) and bool(torch.isfinite(samples).all())):
        raise ValueError("c2st: the samples contain NaN or inf")
    if folds < 2:
        raise ValueError(f"c2st needs at least 2 folds, got {folds}")
    reference, samples = reference.detach().float().cpu(), samples.detach().float().cpu()
    mean, std = reference.mean(0), reference.std(0).clamp_min(1e-12)
    data = torch.cat([(reference - mean) / std, (samples - mean) / std])
    labels = torch.cat([torch.zeros(reference.shape[0]), torch.ones(samples.shape[0])])
    with torch.random.fork_rng(devices=[]):
        generator = torch.Generator().manual_seed(seed)
        order = torch.randperm(data.shape[0], generator=generator)
        scores = []
        for test in order.chunk(folds):
            train = torch.ones(data.shape[0], dtype=torch.bool)
            train[test] = False
            scores.append(
                _fit_and_score(data[train], labels[train], data[test], labels[test], generator, max_epochs)
            )
    return sum(scores) / len(scores)
