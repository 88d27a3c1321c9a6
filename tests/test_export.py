"""Writers of xstereo_gpu.io.export: PLY (read back with meshio), TIFF with NaN and metadata, JSON."""

from __future__ import annotations

import json

import numpy as np
import pytest

from xstereo_gpu.errors import InputError
from xstereo_gpu.io import read_tiff, write_json, write_ply, write_tiff


def test_ply_readable_by_meshio(tmp_path, xp):
    meshio = pytest.importorskip("meshio")
    rng = np.random.default_rng(7)
    pts = rng.standard_normal((50, 3)) * 1000.0
    conf = rng.random(50)
    view = (rng.random(50) > 0.5).astype(np.int8)
    path = write_ply(
        tmp_path / "cloud.ply", xp.asarray(pts), scalars={"confidence": xp.asarray(conf), "view": view}
    )
    head = path.read_bytes()[:300]
    assert head.startswith(b"ply\nformat binary_little_endian 1.0\ncomment units nm\n")
    m = meshio.read(path)
    np.testing.assert_allclose(m.points, pts.astype(np.float32), rtol=1e-7)
    np.testing.assert_allclose(m.point_data["confidence"], conf.astype(np.float32))
    np.testing.assert_array_equal(m.point_data["view"], view.astype(np.float32))
    with pytest.raises(InputError, match="confidence"):
        write_ply(tmp_path / "bad.ply", pts, scalars={"confidence": conf[:-1]})
    assert not (tmp_path / "bad.ply").exists()


def test_tiff_nan_and_metadata(tmp_path, xp):
    img = np.arange(30, dtype=np.float32).reshape(5, 6)
    img[1, 2] = np.nan
    meta = {"upsample": 4, "pixel_size_nm": np.float64(12.25), "convention": "x - d", "bad": float("nan")}
    path = write_tiff(tmp_path / "disparity_left.tif", xp.asarray(img), metadata=meta)
    back, m = read_tiff(path)
    assert back.dtype == np.float32
    np.testing.assert_array_equal(back, img)  # NaN in the same place
    assert m == {"upsample": 4, "pixel_size_nm": 12.25, "convention": "x - d", "bad": None}


def test_write_json(tmp_path):
    obj = {"a": np.float32(1.5), "b": np.arange(3), "c": float("nan"), "d": (1, np.int64(2)), "e": [np.inf]}
    path = write_json(tmp_path / "s.json", obj)
    assert json.loads(path.read_text()) == {"a": 1.5, "b": [0, 1, 2], "c": None, "d": [1, 2], "e": [None]}
    assert path.read_text().startswith('{\n  "a"')
