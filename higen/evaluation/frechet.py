"""The Fréchet distance between two sets of embeddings, each summarised as a Gaussian.

    d^2 = |mu_a - mu_b|^2 + Tr(S_a) + Tr(S_b) - 2 Tr((S_a S_b)^(1/2))

computed as TF-GAN's ``frechet_classifier_distance_from_activations`` does (the original FVD and FID
code call it): float64, unbiased covariances (divided by N - 1), and the trace of the matrix square root
taken as ``Tr(sqrt(sqrt(S_a) S_b sqrt(S_a)))``, which equals ``Tr(sqrt(S_a S_b))`` but needs only square
roots of symmetric positive semi-definite matrices (by SVD; singular values below 1e-10, i.e. round-off,
are kept rather than square-rooted, as TF-GAN does).

With no more embeddings in either set than dimensions (e.g. a few hundred frames against FID's 2,048
features), the covariances have rank below d and :func:`frechet_distance` takes the same trace from the
centred embeddings ``A`` (``N x d``) and ``B`` (``M x d``) instead: ``S_a S_b`` has the eigenvalues of
``(A B^T)(A B^T)^T / ((N - 1)(M - 1))``, so ``Tr((S_a S_b)^(1/2))`` is the sum of the singular values of
``A B^T`` over ``sqrt((N - 1)(M - 1))``. It is the same number without the d x d square roots (up to
round-off, which it has less of: a set against itself gives 0 to ~1e-12 rather than ~1e-5 at d = 2,048),
and takes milliseconds instead of seconds.
"""

from __future__ import annotations

import numpy as np

_SQRT_EPS = 1e-10


def gaussian_statistics(embeddings: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and unbiased covariance (``N - 1``) of ``(N, d)`` embeddings, in float64."""
    x = np.asarray(embeddings, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < 2:
        raise ValueError(f"need at least 2 embeddings as an (N, d) array to estimate a covariance; got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError("embeddings hold NaN or infinite values")
    mean = x.mean(axis=0)
    centred = x - mean
    return mean, centred.T @ centred / (x.shape[0] - 1)


def _symmetric_sqrt(matrix: np.ndarray) -> np.ndarray:
    u, s, vt = np.linalg.svd(matrix)
    s = np.where(s < _SQRT_EPS, s, np.sqrt(s))
    return (u * s) @ vt


def frechet_distance_from_statistics(mean_a, cov_a, mean_b, cov_b) -> float:
    """Squared Fréchet distance between N(mean_a, cov_a) and N(mean_b, cov_b)."""
    mean_a, mean_b = np.asarray(mean_a, np.float64), np.asarray(mean_b, np.float64)
    cov_a, cov_b = np.asarray(cov_a, np.float64), np.asarray(cov_b, np.float64)
    if mean_a.shape != mean_b.shape or cov_a.shape != cov_b.shape or cov_a.shape != mean_a.shape * 2:
        raise ValueError(f"the two sets' statistics do not match: means {mean_a.shape} / {mean_b.shape}, covariances {cov_a.shape} / {cov_b.shape}")
    root_a = _symmetric_sqrt(cov_a)
    trace_sqrt_product = np.trace(_symmetric_sqrt(root_a @ cov_b @ root_a))
    return float(np.sum((mean_a - mean_b) ** 2) + np.trace(cov_a) + np.trace(cov_b) - 2 * trace_sqrt_product)


def frechet_distance(embeddings_a: np.ndarray, embeddings_b: np.ndarray) -> float:
    """Squared Fréchet distance between the Gaussians fitted to two ``(N, d)`` sets (N may differ)."""
    mean_a, cov_a = gaussian_statistics(embeddings_a)
    mean_b, cov_b = gaussian_statistics(embeddings_b)
    n_a, d = np.shape(embeddings_a)
    n_b = np.shape(embeddings_b)[0]
    if max(n_a, n_b) > d or mean_a.shape != mean_b.shape:
        return frechet_distance_from_statistics(mean_a, cov_a, mean_b, cov_b)
    return _frechet_distance_low_rank(embeddings_a, embeddings_b)


def _frechet_distance_low_rank(embeddings_a: np.ndarray, embeddings_b: np.ndarray) -> float:
    """The same distance from the centred embeddings, for sets no larger than the dimension (module docstring)."""
    a, b = np.asarray(embeddings_a, np.float64), np.asarray(embeddings_b, np.float64)
    mean_a, mean_b = a.mean(axis=0), b.mean(axis=0)
    a, b = a - mean_a, b - mean_b
    scale_a, scale_b = a.shape[0] - 1, b.shape[0] - 1
    trace_sqrt_product = np.linalg.svd(a @ b.T, compute_uv=False).sum() / np.sqrt(scale_a * scale_b)
    return float(np.sum((mean_a - mean_b) ** 2) + np.sum(a * a) / scale_a + np.sum(b * b) / scale_b - 2 * trace_sqrt_product)
