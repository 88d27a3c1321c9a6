"""The in-memory form of one stereo shot, and of the ground truth a simulated shot carries.

A shot file (docs/format.md) is read into :class:`Shot` by :func:`xstereo_gpu.io.read_shot` and
written by :func:`xstereo_gpu.io.write_shot`. Arrays here are NumPy (host); the pipeline uploads them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .errors import check
from .geometry import StereoGeometry, real_space_pixel

__all__ = ["Shot", "GroundTruth", "VIEW_NAMES"]

#: Order of the leading view axis everywhere in the engine.
VIEW_NAMES = ("left", "right")


@dataclass
class GroundTruth:
    """What a simulated shot knows about its sample, so that runs can score themselves.

    Coordinates: the object frame of docs/geometry.md. ``x`` and ``y`` are measured from the centre
    pixel ``(N//2, N//2)`` of the view grid, ``z`` from the membrane mid-plane, downstream positive.

    Attributes
    ----------
    views : (2, N, N) complex64
        True exit waves of the left and right views on the view grid (pixel ``pixel_size_m``): the
        projections of the 3D object along each beam, times the illumination.
    pixel_size_m : float
        Real-space pixel of the view grid  [m].
    edge_points_m : (M, 3) float64
        Points sampled along every edge of the object (mid-plane of each edge wall), ``x, y, z`` [m].
    edge_labels : (M,) int8
        Which part each edge point belongs to (0 = membrane cut, 1 = lid).
    description : str
        Human-readable description of the phantom and its parameters.
    extra : dict of str to ndarray or float
        Sample-specific facts used for scoring (for example ``pyramid_height_m``, ``surface_points_m``
        (K, 3) [m], ``edge_hidden`` (M,) bool). Written to and read from the shot file.
    """

    views: np.ndarray
    pixel_size_m: float
    edge_points_m: np.ndarray
    edge_labels: np.ndarray
    description: str = ""
    extra: dict = field(default_factory=dict)

    @property
    def phasable_views(self) -> np.ndarray:
        """(2, N, N) complex64: the exit waves less the uniform background transmission.

        Under flat illumination a membrane that fills the field scatters only into the zero order,
        which the beamstop hides: the patterns determine ``views - background_transmission`` (truth
        ``extra["background_transmission"]``, one value per view, 0 when absent), and that is what phasing
        recovers and
        what the recovered views are scored against.
        """
        bg = self.extra.get("background_transmission") if self.extra else None
        if bg is None:
            return self.views
        bg = np.asarray(bg, dtype=np.complex64).reshape(-1, 1, 1)  # one value per view (path / cos a)
        return (np.asarray(self.views) - bg).astype(np.complex64)


@dataclass
class Shot:
    """One CCD frame holding the two diffraction patterns of a stereo pair, plus its geometry.

    Attributes
    ----------
    frame : (H, W) float32 or (E, H, W) float32
        Detected intensity [photons] (or detector units proportional to photons): one frame, or
        ``E`` exposures of the same frame with different integration times (an HDR series, paper's
        Methods: 30 s and 240 s), merged by the ``prepare`` stage (:mod:`xstereo_gpu.phasing.hdr`).
    mask : (H, W) uint32 or (E, H, W) uint32
        CXI pixel mask bits, the frame's shape; 0 is a good pixel (0x1 invalid, 0x2 saturated,
        0x10 shadowed by the beamstop, ...). Per exposure for a stack (bit 0x2 marks the pixels
        saturated in that exposure).
    wavelength_m, distance_m, detector_pixel_m : float
        Wavelength, sample-detector distance and (effective, binned) detector pixel  [m].
    angles_deg : tuple of float
        ``(t1, t2)`` beam angle magnitudes of the left and right views  [deg].
    centres_px : (2, 2) float64
        ``(row, col)`` of the zero frequency of the left and right patterns on the frame [pixels].
    pattern_size : int
        Side N of the square crop phased per view [pixels].
    sample : str
        Sample name.
    truth : GroundTruth or None
        Present in simulated shots.
    source : str
        File the shot was read from (for messages).
    extra : dict
        Free-form metadata (attributes of ``/entry_1/stereo_1`` in the shot file).
    exposure_times_s : (E,) float64 or None
        Integration time of each exposure  [s]; required for an ``(E, H, W)`` stack, optional
        (``None`` or one value) for a single frame.
    dataset : str
        HDF5 dataset the frame was read from (``"/entry_1/data_1/data"``; for messages), or ``""``.
    """

    frame: np.ndarray
    mask: np.ndarray
    wavelength_m: float
    distance_m: float
    detector_pixel_m: float
    angles_deg: tuple[float, float]
    centres_px: np.ndarray
    pattern_size: int
    sample: str = ""
    truth: GroundTruth | None = None
    source: str = "<memory>"
    extra: dict = field(default_factory=dict)
    exposure_times_s: np.ndarray | None = None
    dataset: str = ""

    @property
    def n_exposures(self) -> int:
        """Number of exposures ``E`` of the frame (1 for a single (H, W) frame)."""
        return int(self.frame.shape[0]) if np.ndim(self.frame) == 3 else 1

    @property
    def frame_shape(self) -> tuple[int, int]:
        """``(H, W)`` of the detector frame, whether it holds one exposure or a stack."""
        return tuple(int(v) for v in np.shape(self.frame)[-2:])

    @property
    def pixel_size_m(self) -> float:
        """Real-space pixel of the phased views, ``lambda D / (N p)``  [m]."""
        return real_space_pixel(self.wavelength_m, self.distance_m, self.detector_pixel_m, self.pattern_size)

    @property
    def geometry(self) -> StereoGeometry:
        return StereoGeometry(self.pixel_size_m, tuple(self.angles_deg))

    def validate(self) -> Shot:
        """Check shapes, finiteness, signs and geometry; raise :class:`InputError` naming the field."""
        src = self.source
        f = np.asarray(self.frame)
        check(
            f.ndim in (2, 3),
            f"{src}: frame",
            f"{f.ndim} dimensions {f.shape}",
            "a 2D detector frame (H, W), or an (E, H, W) stack of exposures",
        )
        check(
            f.ndim == 2 or f.shape[0] >= 1,
            f"{src}: frame",
            f"an empty stack {f.shape}",
            "at least one exposure",
        )
        check(
            f.dtype.kind in "iuf",
            f"{src}: frame",
            f"dtype {f.dtype}",
            "photon counts: integer or floating-point intensities (a bool array is a mask, not a pattern)",
        )
        self._validate_times(f)
        check(
            np.asarray(self.mask).shape == f.shape,
            f"{src}: mask",
            f"shape {np.asarray(self.mask).shape}",
            f"the frame's shape {f.shape}",
        )
        good = np.asarray(self.mask) == 0
        bad = ~np.isfinite(f) & good
        check(
            not bad.any(),
            f"{src}: frame",
            f"{int(bad.sum())} NaN/inf pixels not masked",
            "finite intensities (mask bad pixels with CXI mask bits)",
        )
        neg = (f < 0) & good
        check(
            not neg.any(),
            f"{src}: frame",
            f"{int(neg.sum())} negative intensities (min {float(f[neg].min()) if neg.any() else 0:g})",
            "non-negative photon counts (clip or mask them)",
        )
        self._validate_variation(f, good)
        c = np.asarray(self.centres_px, dtype=float)
        check(
            c.shape == (2, 2),
            f"{src}: pattern centres",
            f"shape {c.shape}",
            "(2, 2): (row, col) of left and right",
        )
        n = int(self.pattern_size)
        hw = f.shape[-2:]
        # a crop larger than the frame holds no more data, only unmeasured pixels (and memory: issue 11)
        top = min(min(hw) * 2, max(hw))
        check(
            2 <= n <= top,
            f"{src}: pattern size",
            repr(self.pattern_size),
            f"between 2 and {top} (a crop no larger than the {hw[0]} x {hw[1]} frame)",
        )
        for k, name in enumerate(VIEW_NAMES):
            r, col = c[k]
            check(
                0 <= r < hw[0] and 0 <= col < hw[1],
                f"{src}: {name} pattern centre",
                f"({r:g}, {col:g})",
                f"inside the frame {hw}",
            )
        _ = self.geometry  # validates pixel size and angles
        return self

    def _validate_variation(self, f: np.ndarray, good: np.ndarray) -> None:
        """Refuse a frame (or an exposure of a stack) whose unmasked pixels all have one value."""
        frames = f.reshape((-1,) + f.shape[-2:])
        goods = good.reshape(frames.shape)
        for e in range(frames.shape[0]):
            vals = frames[e][goods[e]]
            what = "frame" if f.ndim == 2 else f"frame (exposure {e})"
            check(
                vals.size > 0,
                f"{self.source}: {what}",
                f"no signal: every one of the {goods[e].size} pixels is masked",
                "a frame with unmasked pixels (mask value 0)",
            )
            lo, hi = float(vals.min()), float(vals.max())
            check(
                lo != hi,
                f"{self.source}: {what}",
                f"a constant frame: all {vals.size} unmasked pixels are {lo:g}"
                + (" (no signal)" if hi == 0 else ""),
                "diffraction patterns (intensities that vary from pixel to pixel; a constant cannot be "
                "phased)",
            )

    def _validate_times(self, f: np.ndarray) -> None:
        src = self.source
        t = self.exposure_times_s
        if t is None:
            check(
                f.ndim == 2,
                f"{src}: exposure_times_s",
                f"None for a stack of {f.shape[0]} exposures {f.shape}",
                f"{f.shape[0]} positive integration times [s], one per exposure",
            )
            return
        a = np.asarray(t)
        e = f.shape[0] if f.ndim == 3 else 1
        check(a.dtype.kind in "biuf", f"{src}: exposure_times_s", f"dtype {a.dtype}", "real numbers [s]")
        check(
            a.shape in ((e,), ()) if e == 1 else a.shape == (e,),
            f"{src}: exposure_times_s",
            f"shape {a.shape} ({a.size} times) for {e} exposure{'s' if e > 1 else ''} {f.shape}",
            f"({e},): one integration time per exposure",
        )
        a = a.astype(np.float64).ravel()
        bad = ~(np.isfinite(a) & (a > 0))
        check(
            not bad.any(),
            f"{src}: exposure_times_s",
            f"{a.tolist()!r}",
            "positive finite integration times [s]",
        )
