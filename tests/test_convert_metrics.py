"""The accuracy metrics of convert.validate, on maps whose answers are known by hand."""

from __future__ import annotations

import numpy as np
import pytest

from convert import validate

# PRED = [1, 2, 1, 2] and ERR = [a, -a, -a, a] is orthogonal to both a constant and PRED, so the least-squares
# fit of PRED onto PRED + ERR is the identity and every aligned metric can be worked out by hand.
PRED = np.array([1.0, 2.0, 1.0, 2.0])
ERR = np.array([0.3, -0.3, -0.3, 0.3])


def test_fit_scale_shift_recovers_a_known_affine_map() -> None:
    pred = np.random.default_rng(1).uniform(0.1, 5.0, (48, 64)).astype(np.float32)
    scale, shift = validate.fit_scale_shift(pred, 3.0 * pred + 2.0)
    assert scale == pytest.approx(3.0, rel=1e-6)
    assert shift == pytest.approx(2.0, rel=1e-6)


def test_fit_scale_shift_uses_only_the_masked_pixels() -> None:
    pred = np.array([1.0, 2.0, 3.0, 100.0])
    ref = np.array([2.0, 4.0, 6.0, -7.0])
    mask = np.array([True, True, True, False])
    assert validate.fit_scale_shift(pred, ref, mask) == pytest.approx((2.0, 0.0))


def test_fit_of_a_constant_prediction_is_a_pure_shift() -> None:
    assert validate.fit_scale_shift(np.full(4, 5.0), PRED) == pytest.approx((1.0, 1.5 - 5.0))


def test_aligned_metrics_ignore_scale_and_shift() -> None:
    ref = np.random.default_rng(2).uniform(1.0, 10.0, (32, 32))
    pred = 0.01 * ref - 4.0
    assert validate.aligned_abs_rel(pred, ref) == pytest.approx(0.0, abs=1e-9)
    assert validate.delta1(pred, ref) == 1.0
    assert validate.pearson(pred, ref) == pytest.approx(1.0)


def test_metrics_of_a_hand_computed_case() -> None:
    ref = PRED + ERR  # [1.3, 1.7, 0.7, 2.3]; max(p / r, r / p) = 1.3, 1.18, 1.43, 1.15
    assert validate.fit_scale_shift(PRED, ref) == pytest.approx((1.0, 0.0), abs=1e-12)
    assert validate.aligned_abs_rel(PRED, ref) == pytest.approx(np.mean(0.3 / ref))
    assert validate.delta1(PRED, ref) == pytest.approx(0.5)
    assert validate.abs_rel(ref * 1.1, ref) == pytest.approx(0.1)
    assert validate.pearson(PRED, ref) == pytest.approx(np.corrcoef(PRED, ref)[0, 1])


def test_pearson_sign_and_degenerate_maps() -> None:
    ref = np.arange(10.0)
    assert validate.pearson(-ref, ref) == pytest.approx(-1.0)
    assert validate.pearson(np.ones(10), ref) == 0.0


def test_zero_background_is_left_out_of_relative_metrics() -> None:
    """The final ReLU makes far pixels exactly 0 in inverse depth; they must not turn AbsRel into inf."""
    ref = np.concatenate([np.zeros(50), np.linspace(1.0, 2.0, 50)])
    pred = ref.copy()
    pred[:50] = 0.5  # wrong where the reference is 0, which no relative metric can judge
    assert validate.valid_mask(ref).sum() == 50
    assert np.isfinite(validate.aligned_abs_rel(pred, ref))
    assert validate.abs_rel(pred, ref) == 0.0


def test_max_relative_error_is_relative_to_the_reference_peak() -> None:
    ref = np.array([0.0, 5.0, 10.0])
    assert validate.max_relative_error(ref + np.array([0.0, 0.1, 0.0]), ref) == pytest.approx(0.01)


def test_agreement_averages_per_image_figures() -> None:
    refs = [PRED + ERR, 2 * (PRED + ERR)]
    preds = [PRED, 2 * PRED + 1]
    agreed = validate.agreement(preds, refs)
    assert agreed.images == 2
    assert agreed.abs_rel == pytest.approx(np.mean(0.3 / refs[0]))  # the same for both: alignment undoes 2x + 1
    assert agreed.delta1 == pytest.approx(0.5)
    assert agreed.pearson == pytest.approx(validate.pearson(PRED, refs[0]))
    with pytest.raises(ValueError):
        validate.agreement([PRED], [PRED, PRED])
