"""Linear centred kernel alignment (CKA; Kornblith et al. 2019, "Similarity of Neural Network
Representations Revisited", Eq. 5 with linear kernels).

For features ``X`` (n x p) and ``Y`` (n x q) of the same n examples, with columns centred::

    CKA(X, Y) = ||Y^T X||_F^2 / (||X^T X||_F ||Y^T Y||_F)              (feature-space form)
              = <K_c, L_c>_F / (||K_c||_F ||L_c||_F),  K_c = X X^T ...   (Gram form)

The two forms are equal (centring the columns of X is the same as ``H K H`` for ``K = X X^T``);
the feature-space form costs O(n p q) and stores p x q, the Gram form O(n^2 (p + q)) and stores
n x n, so ``form="auto"`` takes the feature-space one when both widths are below n. Everything is
computed in float64. CKA is 1 for identical representations and invariant to orthogonal
transforms and isotropic scaling of either argument (not to arbitrary invertible maps).

``CkaReference`` keeps one side fixed (the final model's features of a layer) so each epoch's
snapshot is compared without keeping every epoch's features.
"""

from __future__ import annotations

import torch

__all__ = ["CkaReference", "centred_gram", "hsic", "linear_cka"]


def _features(x: torch.Tensor) -> torch.Tensor:
    """(n, ...) -> (n, p) float64 with centred columns (one row per example)."""
    if x.dim() < 2:
        raise ValueError(f"expected features of shape (examples, ...), got shape {tuple(x.shape)}")
    if x.shape[0] < 2:
        raise ValueError(f"CKA needs at least 2 examples, got {x.shape[0]}")
    x = x.detach().reshape(x.shape[0], -1).to(torch.float64)
    return x - x.mean(dim=0, keepdim=True)


def centred_gram(x: torch.Tensor) -> torch.Tensor:
    """The centred linear Gram matrix ``H X X^T H`` (n x n, float64) of features ``x`` (n, ...)."""
    xc = _features(x)
    return xc @ xc.T


def hsic(k: torch.Tensor, l: torch.Tensor) -> torch.Tensor:  # noqa: E741 (the paper's names)
    """The biased HSIC estimator ``tr(K H L H) / (n - 1)^2`` of two (uncentred) Gram matrices.

    The direct formula of Gretton et al. 2005 (Kornblith et al. Eq. 3), kept as the reference the
    fast forms are tested against.
    """
    n = k.shape[0]
    h = torch.eye(n, dtype=torch.float64, device=k.device) - 1.0 / n
    k, l = k.to(torch.float64), l.to(torch.float64)  # noqa: E741
    return torch.trace(k @ h @ l @ h) / (n - 1) ** 2


def _use_features(n: int, *widths: int, form: str) -> bool:
    if form not in ("auto", "feature", "gram"):
        raise ValueError(f"form must be auto, feature or gram, got {form!r}")
    return form == "feature" or (form == "auto" and max(widths) < n)


def _ratio(cross: torch.Tensor, self_x: torch.Tensor, self_y: torch.Tensor) -> float:
    denominator = self_x * self_y
    if denominator <= 0:
        # A constant representation (e.g. a dead layer) has no similarity structure at all.
        return float("nan")
    return float(cross / denominator)


def linear_cka(x: torch.Tensor, y: torch.Tensor, form: str = "auto") -> float:
    """Linear CKA of two representations of the same examples.

    Args:
        x: (n, ...) features; flattened per example (e.g. a conv output (n, C, H, W) -> (n, C*H*W)).
        y: (n, ...) features of the same n examples, any width.
        form: ``feature`` (feature-space), ``gram`` (n x n Gram matrices) or ``auto``
            (feature-space when both widths are below n).

    Returns:
        CKA in [0, 1]; NaN when either representation is constant over the examples.
    """
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"x and y must hold the same examples, got {x.shape[0]} and {y.shape[0]} rows")
    xc, yc = _features(x), _features(y)
    if _use_features(xc.shape[0], xc.shape[1], yc.shape[1], form=form):
        cross = torch.linalg.matrix_norm(yc.T @ xc) ** 2
        return _ratio(cross, torch.linalg.matrix_norm(xc.T @ xc), torch.linalg.matrix_norm(yc.T @ yc))
    k, l = xc @ xc.T, yc @ yc.T  # noqa: E741
    return _ratio((k * l).sum(), torch.linalg.matrix_norm(k), torch.linalg.matrix_norm(l))


class CkaReference:
    """One fixed representation (n examples) that others are compared with by linear CKA.

    Keeps the centred features when their width is below n, else the centred Gram matrix, so
    memory stays at most n x n whatever the layer's width.
    """

    def __init__(self, y: torch.Tensor, form: str = "auto") -> None:
        yc = _features(y)
        self.num_examples, self.width = yc.shape
        self.form = form
        self._features = _use_features(self.num_examples, self.width, form=form)
        self._kept = yc if self._features else yc @ yc.T
        self._norm = torch.linalg.matrix_norm(yc.T @ yc if self._features else self._kept)

    def score(self, x: torch.Tensor) -> float:
        """Linear CKA between ``x`` (the same n examples, any width) and the reference."""
        if x.shape[0] != self.num_examples:
            raise ValueError(f"expected features of {self.num_examples} examples, got {x.shape[0]}")
        xc = _features(x)
        if self._features and (self.form == "feature" or xc.shape[1] < self.num_examples):
            cross = torch.linalg.matrix_norm(self._kept.T @ xc) ** 2
            return _ratio(cross, torch.linalg.matrix_norm(xc.T @ xc), self._norm)
        k = xc @ xc.T
        gram = self._kept @ self._kept.T if self._features else self._kept
        return _ratio((k * gram).sum(), torch.linalg.matrix_norm(k), self._norm)
