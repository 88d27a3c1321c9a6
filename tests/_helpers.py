"""Helpers shared by several test files (fixtures live in conftest.py).

``from _helpers import ...`` works because pytest puts ``tests/`` on ``sys.path`` (the test files are
not a package). No name here starts with ``test``, so importing one into a test file adds no test.
"""

from __future__ import annotations

import math
import pathlib
import re
import shutil

import h5py
import numpy as np

from xstereo_gpu.backend import to_host
from xstereo_gpu.simulate.detector import PAPER_EXPOSURES_S, far_field

# -- arrays ------------------------------------------------------------------------------------------


def host(a):
    """``a`` as a NumPy array (copied from the device when it is a CuPy array)."""
    return np.asarray(to_host(a))


def random_complex(rng, shape):
    return (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)).astype(np.complex64)


# -- phasing -----------------------------------------------------------------------------------------


def shapes_object(n: int = 128, dx: int = 0) -> np.ndarray:
    """Amplitude-only test object (~40 px): a rectangle, a disk and a wedge; ``dx`` moves two parts."""
    yy, xx = np.mgrid[:n, :n]
    c = n // 2
    o = np.zeros((n, n), np.float32)
    o[(abs(yy - c + 8) < 10) & (abs(xx - c + 6) < 14)] = 1.0
    o[(yy - c - 10) ** 2 + (xx - c - 8 - dx) ** 2 < 81] = 0.7
    o[(yy > c - 20) & (yy < c - 12) & (xx > c + 6 + dx) & (xx < c + 18 + dx - (yy - (c - 20)))] = 0.5
    return o


def diffraction_pattern(w: np.ndarray) -> np.ndarray:
    """Engine convention: I = |fftshift(fft2(w))|**2."""
    return np.abs(np.fft.fftshift(np.fft.fft2(w), axes=(-2, -1))) ** 2


def beamstop_mask(shape, radius: float) -> np.ndarray:
    n = shape[-1]
    yy, xx = np.mgrid[:n, :n]
    return np.broadcast_to((yy - n // 2) ** 2 + (xx - n // 2) ** 2 > radius**2, shape).copy()


def phasing_problem(xp, n=32, seed=40):
    """A small object's diffraction pattern (2 views), with a beamstop, on ``xp``'s device."""
    rng = np.random.default_rng(seed)
    obj = np.zeros((2, n, n), np.complex64)
    obj[:, n // 2 - 5 : n // 2 + 4, n // 2 - 3 : n // 2 + 6] = rng.random((2, 9, 9)) + 0.5
    inten = np.abs(np.fft.fftshift(np.fft.fft2(obj), axes=(-2, -1))).astype(np.float32) ** 2
    valid = np.ones(inten.shape, bool)
    valid[:, n // 2 - 1 : n // 2 + 2, n // 2 - 1 : n // 2 + 2] = False
    return xp.asarray(inten), xp.asarray(valid)


# -- HDR exposures -----------------------------------------------------------------------------------

TIMES = PAPER_EXPOSURES_S  # (30, 240) s


def cross_rate(n: int = 128, photons_per_s: float = 2e5) -> np.ndarray:
    """Expected photons per second of the far field of a small cross, zero frequency at (n//2, n//2)."""
    yy, xx = np.mgrid[:n, :n] - n // 2
    obj = (((abs(yy) < 12) & (abs(xx) < 5)) | ((abs(xx) < 12) & (abs(yy) < 4))).astype(np.complex64)
    i = far_field(obj).astype(np.float64)
    return i * (photons_per_s / i.sum())


# -- stereo ------------------------------------------------------------------------------------------

#: The six maps of a block-matching or SGM result.
FIELDS = (
    "disparity_left",
    "disparity_right",
    "cost_left",
    "cost_right",
    "confidence_left",
    "confidence_right",
)


def similarity(deg, shift_xy, centre):
    th = np.deg2rad(deg)
    A = np.array([[np.cos(th), -np.sin(th), 0], [np.sin(th), np.cos(th), 0], [0, 0, 1.0]])
    A[:2, 2] = np.asarray(shift_xy, float) + np.asarray(centre, float) - A[:2, :2] @ np.asarray(centre, float)
    return A


def rotation_deg(H):
    return math.degrees(math.atan2(H[1, 0], H[0, 0]))


# -- CUDA kernels ------------------------------------------------------------------------------------


def cuda_code(src: str) -> str:
    """A .cu source with its comments (``//`` and ``/* */``) removed: what the checks on code read."""
    src = re.sub(r"/\*.*?\*/", "", src, flags=re.S)
    return "\n".join(line.split("//")[0] for line in src.splitlines())


def poison_empty(monkeypatch, cupy):
    """Make the binding's output buffers start as a sentinel, so unwritten entries fail."""
    empty = cupy.empty

    def poisoned(shape, dtype=float, *args, **kwargs):
        a = empty(shape, dtype, *args, **kwargs)
        a.fill(-12345.0)
        return a

    monkeypatch.setattr(cupy, "empty", poisoned)


# -- the command and its files -----------------------------------------------------------------------

#: Tiny phasing/matching work for run-type commands (errors fire before it anyway).
TINY = ["--runs", "2", "--iterations", "10", "--no-figures", "-q"]
#: A third-party CXI file of ../shared/fixtures (a stack of 200 frames).
PETRA = "cdtools_petra3_p25_nearfield/PETRAIII_P25_Near_Field_Ptycho.cxi"


def temporaries(folder: pathlib.Path) -> list[str]:
    return sorted(str(p) for pat in ("*.tmp-*", "*.old-*") for p in folder.rglob(pat))


# -- shot files whose detector data are links --------------------------------------------------------

DATA = "/entry_1/instrument_1/detector_1/data"
DATA_LINK = "/entry_1/data_1/data"


def copy_inside(tmp: pathlib.Path, shot: pathlib.Path, name: str = "shot.cxi") -> pathlib.Path:
    """A copy of the shot in its own folder tmp/in (the folder its links may point into)."""
    (tmp / "in").mkdir(exist_ok=True)
    dst = tmp / "in" / name
    shutil.copyfile(shot, dst)
    return dst


def elsewhere(tmp: pathlib.Path, shot: pathlib.Path) -> pathlib.Path:
    """tmp/elsewhere: outside the input's folder, holding the shot's frame as HDF5 and as raw bytes."""
    out = tmp / "elsewhere"
    out.mkdir(exist_ok=True)
    with h5py.File(shot, "r") as f:
        frame = f[DATA][()]
    with h5py.File(out / "frame.h5", "w") as g:
        g["frame"] = frame
    frame.astype("<f4").tofile(out / "frame.raw")
    return out


def link_data(path: pathlib.Path, make) -> pathlib.Path:
    """Replace the shot's detector data by what ``make(f)`` creates at DATA."""
    with h5py.File(path, "r+") as f:
        shape = f[DATA].shape
        del f[DATA]
        make(f, shape)
    return path


def make_vds(source: str):
    def make(f, shape):
        layout = h5py.VirtualLayout(shape=shape, dtype=np.float32)
        layout[:] = h5py.VirtualSource(source, "frame", shape=shape)
        f.create_virtual_dataset(DATA, layout)

    return make


def make_raw(source: str, dtype=np.float32):
    def make(f, shape):
        f.create_dataset(
            DATA,
            shape=shape,
            dtype=dtype,
            external=[(source, 0, int(np.prod(shape)) * np.dtype(dtype).itemsize)],
        )

    return make


def make_ext(source: str):
    def make(f, shape):
        f[DATA] = h5py.ExternalLink(source, "/frame")

    return make
