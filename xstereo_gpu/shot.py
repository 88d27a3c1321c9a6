"""The in-memory form of one stereo shot, and of the ground truth a simulated shot carries.

A shot file (docs/format.md) is read into :class:`Shot` by :func:`xstereo_gpu.io.read_shot` and
written by :func:`xstereo_gpu.io.write_shot`. Arrays here are NumPy (host); the pipeline uploads them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .errors import InputError, check
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


@dataclass
class Shot:
    """One CCD frame holding the two diffraction patterns of a stereo pair, plus its geometry.

    Attributes
    ----------
    frame : (H, W) float32
        Detected intensity [photons] (or detector units proportional to photons).
    mask : (H, W) uint32
        CXI pixel mask bits; 0 is a good pixel (0x1 invalid, 0x2 saturated, 0x10 shadowed by the
        beamstop, ...).
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

    @property
    def pixel_size_m(self) -> float:
        """Real-space pixel of the phased views, ``lambda D / (N p)``  [m]."""
        return real_space_pixel(self.wavelength_m, self.distance_m, self.detector_pixel_m, self.pattern_size)

    @property
    def geometry(self) -> StereoGeometry:
        return StereoGeometry(self.pixel_size_m, tuple(self.angles_deg))

    def validate(self) -> "Shot":
        """Check shapes, finiteness, signs and geometry; raise :class:`InputError` naming the field."""
        src = self.source
        f = np.asarray(self.frame)
        check(f.ndim == 2, f"{src}: frame", f"{f.ndim} dimensions {f.shape}", "a 2D detector frame (H, W)")
        check(np.asarray(self.mask).shape == f.shape, f"{src}: mask", f"shape {np.asarray(self.mask).shape}",
              f"the frame's shape {f.shape}")
        good = np.asarray(self.mask) == 0
        bad = ~np.isfinite(f) & good
        check(not bad.any(), f"{src}: frame", f"{int(bad.sum())} NaN/inf pixels not masked",
              "finite intensities (mask bad pixels with CXI mask bits)")
        neg = (f < 0) & good
        check(not neg.any(), f"{src}: frame", f"{int(neg.sum())} negative intensities (min {float(f[neg].min()) if neg.any() else 0:g})",
              "non-negative photon counts (clip or mask them)")
        c = np.asarray(self.centres_px, dtype=float)
        check(c.shape == (2, 2), f"{src}: pattern centres", f"shape {c.shape}", "(2, 2): (row, col) of left and right")
        n = int(self.pattern_size)
        check(2 <= n <= min(f.shape) * 2, f"{src}: pattern size", repr(self.pattern_size), f"between 2 and {min(f.shape) * 2}")
        for k, name in enumerate(VIEW_NAMES):
            r, col = c[k]
            check(0 <= r < f.shape[0] and 0 <= col < f.shape[1], f"{src}: {name} pattern centre",
                  f"({r:g}, {col:g})", f"inside the frame {f.shape}")
        self.geometry  # validates pixel size and angles
        return self
