"""Nanoparticles in general 3D arrangements: random clusters, a 3D curve, a tilted rough surface.

Objects the paper did not image, made to test what the pyramid and the crosses do not: depth that
varies everywhere and in every direction, features that repeat, overlap in one view and not in the
other, and no plane or symmetry to lean on (issue 10: the cloud of particles along a 3D curve came
out flat when the right view's twin was chosen by resemblance).

Layouts (``PARTICLE_SAMPLES``), all seeded, in the object frame ``(x, y, z)`` (docs/geometry.md)
centred on the view-grid centre pixel; ``W`` = ``span_m`` (lateral extent), ``D`` = ``depth_m``:

``"clusters"``
    Six clusters; centres uniform in ``|x|, |y| <= W/2 - 3 sigma``, ``|z| <= D/2 - 3 sigma``
    (``sigma = W / 16``), particles normally distributed around them. Label = cluster index.
``"curve"``
    A smooth closed-form space curve through the box, ``x = W/2 (2 s - 1)``,
    ``y = 0.35 W sin(2.6 pi s + p1)``, ``z = D/2 cos(2.2 pi s + p2)`` (``s`` in [0, 1], random
    phases), particles spaced along its arc length with a jitter of 0.1 diameter. Label 0.
``"rough-surface"``
    A surface tilted in both x and y, ``z = D/2 (0.55 u + 0.25 v) + rough(x, y)`` with
    ``u, v`` = ``x, y`` / (W/2) and ``rough`` a sum of six random sinusoids of wavelengths
    0.3-0.8 W (RMS ``0.1 D``); particles decorate five scratches across it: straight lines in
    ``(x, y)`` 0.11-0.19 W apart, at random angles within 0.2 rad of each other, inside the rounded
    triangle of radius ``W/2 (0.8 + 0.2 cos(3 t - a3))`` at polar angle ``t`` (a layout that is not
    centrosymmetric, which would make the twin ambiguous), spaced 1.2 diameters (a random subset of
    those places when ``count`` is smaller), centres on the surface: the surface's height sampled
    along them. Label 0; ``truth.extra["surface_points_m"]`` are the centres. Particles spread
    uniformly over a patch of the surface were tried first: the engine's phasing stagnates on such a
    dense field of dots (view correlation 0.5-0.7 at every size tried).

Particles never overlap (random sequential placement, at most ``count``; fewer when the layout
cannot hold them within a bounded number of tries).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .phantoms import VoxelObject, _box_origin, voxelise_spheres

__all__ = ["Particles", "PARTICLE_SAMPLES"]

#: The particle layouts, each a sample of :class:`~xstereo_gpu.simulate.SimulationOptions`.
PARTICLE_SAMPLES = ("clusters", "curve", "rough-surface")


@dataclass(frozen=True)
class Particles:
    """Non-overlapping spheres in one of the ``PARTICLE_SAMPLES`` layouts (module docstring).

    Parameters
    ----------
    layout : str
        One of ``PARTICLE_SAMPLES``.
    count : int
        Target number of spheres.
    span_m, depth_m : float
        Lateral extent ``W`` and depth extent ``D`` of the layout  [m].
    sphere_radius_m : float
        Radius ``r`` of the spheres  [m].
    seed : int
        Seed of the layout and of the placement.
    """

    layout: str
    count: int
    span_m: float
    depth_m: float
    sphere_radius_m: float
    seed: int = 0

    @classmethod
    def from_options(cls, options) -> Particles:
        """The sample described by a :class:`~xstereo_gpu.simulate.SimulationOptions`."""
        return cls(
            layout=options.sample,
            count=int(options.particle_count),
            span_m=options.particle_span_um * 1e-6,
            depth_m=options.particle_depth_um * 1e-6,
            sphere_radius_m=options.sphere_diameter_nm * 0.5e-9,
            seed=int(options.seed),
        )

    # -- the layouts ---------------------------------------------------------------------------------
    def _candidates(self, rng: np.random.Generator, m: int) -> tuple[np.ndarray, np.ndarray]:
        """``m`` candidate centres (m, 3) and their labels (m,), in placement order."""
        w, d = self.span_m, self.depth_m
        if self.layout == "clusters":
            sigma = w / 16
            k = 6
            centres = np.stack(
                [
                    rng.uniform(-1, 1, k) * (w / 2 - 3 * sigma),
                    rng.uniform(-1, 1, k) * (w / 2 - 3 * sigma),
                    rng.uniform(-1, 1, k) * max(d / 2 - 3 * sigma, 0.0),
                ],
                axis=1,
            )
            lab = rng.integers(0, k, m)
            pts = centres[lab] + rng.normal(0.0, sigma, (m, 3))
            lim = np.array([w / 2, w / 2, d / 2 + sigma])
            pts = np.clip(pts, -lim, lim)
            return pts, lab.astype(np.int8)
        if self.layout == "curve":
            p1, p2 = rng.uniform(0, 2 * math.pi, 2)
            s = np.linspace(0.0, 1.0, 4001)
            x = w / 2 * (2 * s - 1)
            y = 0.35 * w * np.sin(2.6 * math.pi * s + p1)
            z = d / 2 * np.cos(2.2 * math.pi * s + p2)
            pts = np.stack([x, y, z], axis=1)
            arc = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(pts, axis=0), axis=1))])
            step = 2.4 * self.sphere_radius_m
            at = np.arange(0.0, arc[-1], step)[:m]
            at = at + rng.uniform(-0.1, 0.1, len(at)) * 2 * self.sphere_radius_m
            out = np.stack([np.interp(at, arc, pts[:, i]) for i in range(3)], axis=1)
            return out, np.zeros(len(out), dtype=np.int8)
        # rough surface
        ang = rng.uniform(0, 2 * math.pi, 6)
        lam = rng.uniform(0.3, 0.8, 6) * w
        ph = rng.uniform(0, 2 * math.pi, 6)
        amp = 0.1 * d * math.sqrt(2.0 / 6)  # RMS 0.1 D for six sinusoids

        def surface(x, y):
            kx, ky = np.cos(ang) / lam, np.sin(ang) / lam
            rough = amp * np.sin(2 * math.pi * (x[:, None] * kx + y[:, None] * ky) + ph).sum(axis=1)
            return d / 2 * (0.55 * x + 0.25 * y) / (w / 2) + rough

        # five scratches across the surface, each a line at its own small angle to the others; the
        # particles that decorate them sample the surface's height along them
        phi = rng.uniform(0, math.pi) + rng.uniform(-0.2, 0.2, 5)
        offsets = np.array([-0.4, -0.23, -0.04, 0.12, 0.33]) * w + rng.uniform(-0.03, 0.03, 5) * w
        a3 = rng.uniform(0, 2 * math.pi)
        step = 2.4 * self.sphere_radius_m
        along = np.arange(-0.5 * w, 0.5 * w, step)
        lines = []
        for f, o in zip(phi, offsets):
            a = along + rng.uniform(-0.1, 0.1, len(along)) * 2 * self.sphere_radius_m
            x = a * math.cos(f) - o * math.sin(f)
            y = a * math.sin(f) + o * math.cos(f)
            # inside a rounded triangle (not centrosymmetric, as the offsets are not)
            keep = np.hypot(x, y) <= w / 2 * (0.8 + 0.2 * np.cos(3 * np.arctan2(y, x) - a3))
            lines.append(np.stack([x[keep], y[keep]], axis=1))
        xy = rng.permutation(np.concatenate(lines))[:m]  # a random subset when the count is smaller
        pts = np.concatenate([xy, surface(xy[:, 0], xy[:, 1])[:, None]], axis=1)
        return pts, np.zeros(len(pts), dtype=np.int8)

    def spheres(self) -> tuple[np.ndarray, np.ndarray]:
        """Seeded random sequential placement of non-overlapping spheres.

        Returns
        -------
        centres : (S, 3) float64
            Sphere centres, object frame  [m].
        labels : (S,) int8
            Cluster index (``"clusters"``), else 0.
        """
        rng = np.random.default_rng([int(self.seed), 0xBA11])
        r = self.sphere_radius_m
        tries = 20 * self.count if self.layout != "curve" else self.count
        cand, lab = self._candidates(rng, tries)
        cell = 2 * r
        grid: dict[tuple[int, int, int], list[int]] = {}
        keep: list[int] = []
        for i, c in enumerate(cand):
            key = tuple(int(math.floor(q / cell)) for q in c)
            clash = any(
                np.sum((cand[j] - c) ** 2) < (2 * r) ** 2
                for a in (-1, 0, 1)
                for b in (-1, 0, 1)
                for e in (-1, 0, 1)
                for j in grid.get((key[0] + a, key[1] + b, key[2] + e), ())
            )
            if clash:
                continue
            grid.setdefault(key, []).append(i)
            keep.append(i)
            if len(keep) >= self.count:
                break
        return cand[keep].astype(np.float64), lab[keep]

    # -- voxels --------------------------------------------------------------------------------------
    def box_half_px(self, pixel_m: float, max_tan: float, margin_px: int = 3) -> tuple[int, int]:
        """Half sizes ``(rows, cols)`` of the sub-box holding the spheres and their shifts  [pixels]."""
        e = self.span_m / 2 + 2 * self.sphere_radius_m
        shift = (self.depth_m + 2 * self.sphere_radius_m) * max_tan
        return (math.ceil(e / pixel_m) + margin_px, math.ceil((e + shift) / pixel_m) + margin_px)

    def voxelise(
        self, *, pixel_m: float, grid_size: int, dz_m: float, max_tan: float, supersample: int, centres
    ) -> VoxelObject:
        """Occupancy of the spheres ``centres`` (S, 3) [m] on a sub-box centred on the view grid."""
        hr, hc = self.box_half_px(pixel_m, max_tan)
        r0, c0 = _box_origin(int(grid_size), hr, hc)
        r = self.sphere_radius_m
        z_lo = float(centres[:, 2].min() - r) if len(centres) else 0.0
        z_hi = float(centres[:, 2].max() + r) if len(centres) else 0.0
        j0 = math.floor(z_lo / dz_m + 0.5)
        j1 = math.ceil(z_hi / dz_m - 0.5)
        z = np.arange(j0, j1 + 1) * dz_m
        occ = voxelise_spheres(
            centres,
            r,
            pixel_m=pixel_m,
            dz_m=dz_m,
            box=(len(z), 2 * hr + 1, 2 * hc + 1),
            centre_px=(hr, hc),
            j0=j0,
            supersample=supersample,
        )
        return VoxelObject(
            occupancy=occ,
            z_m=z,
            dz_m=float(dz_m),
            pixel_m=float(pixel_m),
            origin_px=(r0, c0),
            background_path_m=0.0,
        )

    def describe(self, n_spheres: int | None = None) -> str:
        """One-line human-readable description of the sample and its parameters."""
        what = {
            "clusters": "in six random 3D clusters",
            "curve": "along a 3D curve",
            "rough-surface": "decorating scratches on a tilted rough surface",
        }[self.layout]
        count = "" if n_spheres is None else f"{n_spheres} "
        return (
            f"nanoparticles {what}: {count}spheres of {2 * self.sphere_radius_m * 1e9:g} nm diameter over "
            f"{self.span_m * 1e6:g} um laterally and {self.depth_m * 1e6:g} um in depth, layout and "
            f"placement seed {self.seed}"
        )
