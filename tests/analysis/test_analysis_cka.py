"""Linear CKA: the properties of Kornblith et al. 2019 and agreement of its three formulas."""

from __future__ import annotations

import math

import pytest
import torch

from reproductions.spfde_neurips22.analysis.cka import CkaReference, centred_gram, hsic, linear_cka


def _random(n: int, *shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, *shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def _orthogonal(p: int, seed: int = 1) -> torch.Tensor:
    q, _ = torch.linalg.qr(_random(p, p, seed=seed))
    return q


@pytest.mark.parametrize("form", ["feature", "gram", "auto"])
@pytest.mark.parametrize("width", [8, 200])  # below and above the number of examples (50)
def test_cka_of_a_representation_with_itself_is_one(form: str, width: int) -> None:
    x = _random(50, width)
    assert linear_cka(x, x, form=form) == pytest.approx(1.0, abs=1e-12)
    assert linear_cka(x.float(), x.float(), form=form) == pytest.approx(1.0, abs=1e-6)


@pytest.mark.parametrize("form", ["feature", "gram"])
def test_cka_is_invariant_to_orthogonal_transforms_and_isotropic_scaling(form: str) -> None:
    x, y = _random(60, 12, seed=2), _random(60, 20, seed=3)
    y = y + 0.5 * torch.cat([x, x[:, :8]], dim=1)  # related representations: CKA well inside (0, 1)
    base = linear_cka(x, y, form=form)
    assert 0.05 < base < 0.95
    assert linear_cka(x @ _orthogonal(12), y, form=form) == pytest.approx(base, rel=1e-10)
    assert linear_cka(x, y @ _orthogonal(20, seed=4), form=form) == pytest.approx(base, rel=1e-10)
    assert linear_cka(3.5 * x, 0.01 * y, form=form) == pytest.approx(base, rel=1e-10)
    assert linear_cka(y, x, form=form) == pytest.approx(base, rel=1e-10)  # symmetric


def test_cka_is_not_invariant_to_arbitrary_invertible_maps() -> None:
    x = _random(60, 10, seed=5)
    stretch = torch.diag(torch.logspace(0, 3, 10, dtype=torch.float64))
    assert linear_cka(x @ stretch, x) < 0.9


def test_cka_matches_the_direct_hsic_formula() -> None:
    x, y = _random(40, 30, seed=6), _random(40, 7, seed=7)
    y = y + x[:, :7]
    k, l = x @ x.T, y @ y.T  # noqa: E741 (uncentred: hsic centres with H)
    direct = hsic(k, l) / torch.sqrt(hsic(k, k) * hsic(l, l))
    for form in ("feature", "gram", "auto"):
        assert linear_cka(x, y, form=form) == pytest.approx(float(direct), rel=1e-10)


@pytest.mark.parametrize(("width_x", "width_y"), [(5, 9), (300, 400), (5, 400)])
def test_feature_space_and_gram_forms_agree(width_x: int, width_y: int) -> None:
    x, y = _random(64, width_x, seed=8), _random(64, width_y, seed=9)
    y[:, :width_x] += 2 * x[:, : min(width_x, width_y)]
    assert linear_cka(x, y, form="feature") == pytest.approx(linear_cka(x, y, form="gram"), rel=1e-10)


def test_centred_gram_is_h_k_h() -> None:
    x = _random(20, 6, seed=10)
    h = torch.eye(20, dtype=torch.float64) - 1.0 / 20
    assert torch.allclose(centred_gram(x), h @ (x @ x.T) @ h, atol=1e-12)


def test_conv_features_are_flattened_per_example() -> None:
    x = _random(16, 3, 4, 4, seed=11)
    assert linear_cka(x, x.reshape(16, -1) @ _orthogonal(48)) == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize("ref_width", [6, 90])  # kept as features / kept as a Gram matrix (n = 32)
@pytest.mark.parametrize("width", [4, 70])
def test_reference_scores_match_linear_cka(ref_width: int, width: int) -> None:
    y, x = _random(32, ref_width, seed=12), _random(32, width, seed=13)
    x[:, : min(width, ref_width)] += y[:, : min(width, ref_width)]
    reference = CkaReference(y)
    assert reference.score(x) == pytest.approx(linear_cka(x, y), rel=1e-10)
    assert reference.score(y) == pytest.approx(1.0, abs=1e-12)


def test_constant_representations_and_bad_shapes() -> None:
    x = _random(10, 4)
    assert math.isnan(linear_cka(torch.ones(10, 4), x))
    with pytest.raises(ValueError, match="same examples"):
        linear_cka(x, _random(11, 4))
    with pytest.raises(ValueError, match="at least 2"):
        linear_cka(x[:1], x[:1])
    with pytest.raises(ValueError, match="form"):
        linear_cka(x, x, form="kernel")
    with pytest.raises(ValueError, match="10 examples"):
        CkaReference(x).score(_random(9, 4))
