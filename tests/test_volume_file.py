"""Volume and mesh files (xstereo_gpu.io.volume_file): the HDF5 volume round trip, the binary PLY mesh."""

from __future__ import annotations

import numpy as np
import pytest

from xstereo_gpu.cloud import surface_mesh
from xstereo_gpu.errors import InputError
from xstereo_gpu.io.volume_file import read_volume_h5, write_mesh_ply, write_volume_h5


def test_write_volume_h5_round_trip(tmp_path):
    rng = np.random.default_rng(33)
    vol = rng.random((5, 6, 7)) > 0.5
    p = write_volume_h5(
        tmp_path / "volume.h5",
        vol,
        voxel_size_nm=(146.0, 49.0, 49.0),
        origin_nm=(-730, -147, -147),
        attrs={"angles_deg": [9.5, 9.5], "sample": "cross", "pixel_nm": 49.0},
    )
    back, meta = read_volume_h5(p)
    np.testing.assert_array_equal(back, vol)
    assert back.dtype == bool
    assert meta["voxel_size_nm"] == (146.0, 49.0, 49.0) and meta["origin_nm"] == (-730.0, -147.0, -147.0)
    assert meta["attrs"]["sample"] == "cross" and meta["attrs"]["pixel_nm"] == 49.0
    import h5py

    with h5py.File(p) as f:
        assert f["voxel_size"].attrs["units"] == "nm" and f["volume"].attrs["axes"] == "z,y,x"
        assert f["volume"].dtype == np.uint8
    fl = rng.random((3, 4, 5)).astype(np.float64)
    back2, _ = read_volume_h5(write_volume_h5(tmp_path / "f.h5", fl, voxel_size_nm=(1, 1, 1)))
    np.testing.assert_allclose(back2, fl.astype(np.float32))
    assert [q.name for q in tmp_path.iterdir()] and not any(".tmp-" in q.name for q in tmp_path.iterdir())
    with pytest.raises(InputError, match="voxel_size_nm"):
        write_volume_h5(tmp_path / "bad.h5", vol, voxel_size_nm=(1.0, -1.0, 1.0))
    assert not (tmp_path / "bad.h5").exists()


def test_write_mesh_ply_reads_back_with_meshio(tmp_path):
    meshio = pytest.importorskip("meshio")
    z, y, x = np.indices((20, 20, 20))
    ball = (x - 9.5) ** 2 + (y - 9.5) ** 2 + (z - 9.5) ** 2 <= 36
    v, f = surface_mesh(ball, (146.0, 49.0, 49.0))
    p = write_mesh_ply(tmp_path / "mesh.ply", v, f, comments=("sample cross",))
    m = meshio.read(p)
    np.testing.assert_allclose(m.points, v.astype(np.float32), rtol=1e-6)
    tri = m.get_cells_type("triangle")
    np.testing.assert_array_equal(tri, f)
    assert p.read_bytes().startswith(b"ply\nformat binary_little_endian 1.0\n")
    with pytest.raises(InputError, match="faces"):
        write_mesh_ply(tmp_path / "bad.ply", v, f + len(v))
    assert not (tmp_path / "bad.ply").exists()
