"""The shared argument checks of xstereo_gpu.checks: what passes, what fails, and the messages."""

import numpy as np
import pytest

from xstereo_gpu.checks import check_image, check_points, check_positive
from xstereo_gpu.errors import InputError


@pytest.mark.parametrize(
    "value, kw",
    [
        (1, {}),
        (2.5, {}),
        (np.float32(1e-30), {}),
        (np.array(3.0), {}),
        (0, dict(allow_zero=True)),
        (3, dict(integer=True)),
        (3.0, dict(integer=True)),
        (np.int64(7), dict(integer=True)),
        (True, dict(integer=True)),
        (2**70, dict(integer=True)),  # any Python integer, however large
    ],
)
def test_check_positive_passes_and_returns_the_value(value, kw):
    assert check_positive("opt", value, **kw) is value


@pytest.mark.parametrize(
    "value, kw, expected",
    [
        (0, {}, "a positive finite number"),
        (-1.0, dict(allow_zero=True), "a non-negative finite number"),
        (float("nan"), {}, "a positive finite number"),
        (float("inf"), {}, "a positive finite number"),
        (2.5, dict(integer=True), "a positive integer"),
        (0, dict(integer=True), "a positive integer"),
        (-1, dict(integer=True, allow_zero=True), "a non-negative integer"),
        (None, {}, "a positive finite number"),
        ("3", {}, "a positive finite number"),
        (np.ones(2), {}, "a positive finite number"),  # not a scalar: an InputError, not a ValueError
    ],
)
def test_check_positive_names_the_argument_value_and_expectation(value, kw, expected):
    with pytest.raises(InputError) as err:
        check_positive("prtf.n_shells", value, **kw)
    assert err.value.where == "prtf.n_shells" and err.value.expected == expected
    assert err.value.found == repr(value)


def test_check_positive_expected_overrides_the_message():
    with pytest.raises(InputError, match="found -2.0; expected a positive finite distance in nm"):
        check_positive("components.radius_nm", -2.0, expected="a positive finite distance in nm")


def test_check_image_casts_to_float32_and_refuses_bad_images():
    img = np.arange(6, dtype=np.float64).reshape(2, 3)
    out = check_image(img, "block_match.left")
    assert out.dtype == np.float32 and out.shape == (2, 3)
    f32 = img.astype(np.float32)
    assert check_image(f32, "x") is f32  # no copy when already float32
    for bad, found in (
        (np.zeros(3), "shape"),
        (np.zeros((2, 2), complex), "dtype"),
        (np.zeros((0, 4)), "shape"),
        (np.array([[1.0, np.nan]]), "non-finite"),
    ):
        with pytest.raises(InputError, match=found) as err:
            check_image(bad, "block_match.left")
        assert err.value.where == "block_match.left"


def test_check_points_checks_columns_rows_dtype_and_finiteness():
    pts = np.arange(6, dtype=np.int32).reshape(2, 3)
    out = check_points(pts, "knn.points")
    assert out.dtype == np.float64 and np.array_equal(out, pts)
    assert check_points(np.zeros((0, 3)), "knn.points").shape == (0, 3)
    with pytest.raises(InputError, match=r"expected \(M, 3\): x, y, z per point"):
        check_points(np.zeros((4, 2)), "knn.points")
    with pytest.raises(InputError, match="at least 3"):
        check_points(np.zeros((2, 3)), "fit_plane.points", minimum=3)
    with pytest.raises(InputError, match="real coordinates"):
        check_points(np.zeros((2, 3), complex), "knn.points")
    with pytest.raises(InputError, match="finite x, y"):
        check_points(np.array([[0.0, np.inf]]), "points_left", columns=2)
