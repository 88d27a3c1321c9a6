"""Figures like the paper's: dual pattern, phased views, disparity, depth, cloud, surface, PRTF.

matplotlib is imported lazily with the Agg backend, so nothing here needs a display.
"""

from __future__ import annotations

import pathlib

import numpy as np

from .cloud.volume import surface_mesh
from .shot import VIEW_NAMES

__all__ = [
    "figure_patterns",
    "figure_views",
    "figure_disparity",
    "figure_depth",
    "figure_cloud",
    "figure_surface",
    "figure_quality",
    "figure_phasing_history",
]


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: pathlib.Path) -> None:
    fig.savefig(path, dpi=110, bbox_inches="tight")
    _plt().close(fig)


def _extent(shape, pixel_m: float | None, upsample: int = 1) -> tuple[list[float], str]:
    """imshow extent and its unit for an (h, w) image whose pixel is ``pixel_m / upsample``.

    With a pixel size: micrometres, centred at view pixel ``(H//2, W//2)``. Without one (no geometry):
    view pixels, the first pixel's centre at 0, unit ``"px"``.
    """
    h, w = int(shape[0]), int(shape[1])
    if pixel_m is None or not np.isfinite(pixel_m):
        return [-0.5, w / upsample - 0.5, h / upsample - 0.5, -0.5], "px"
    p = pixel_m / upsample * 1e6

    def centre(n: int) -> float:  # matching-grid index of view pixel N//2
        return (n // upsample) // 2 * upsample + (upsample - 1) / 2

    cy, cx = centre(h), centre(w)
    return [(-0.5 - cx) * p, (w - 0.5 - cx) * p, (h - 0.5 - cy) * p, (-0.5 - cy) * p], "um"


def figure_patterns(shot, path) -> None:
    """The dual diffraction pattern on the CCD, log scale, with both crops outlined (paper Fig. 2a)."""
    plt = _plt()
    from matplotlib.patches import Rectangle

    frame = np.asarray(shot.frame, dtype=float)
    note = ""
    if frame.ndim == 3:  # an HDR series: show the longest exposure (its saturated centres included)
        k = int(np.argmax(shot.exposure_times_s))
        frame = frame[k]
        times = list(np.asarray(shot.exposure_times_s).tolist())
        note = f", exposure {shot.exposure_times_s[k]:g} s of {times} s"
    fig, ax = plt.subplots(figsize=(6.4, 5.6))
    im = ax.imshow(np.log10(1 + np.clip(frame, 0, None)), cmap="magma", origin="upper")
    n = shot.pattern_size
    for (r, c), name, col in zip(np.asarray(shot.centres_px), VIEW_NAMES, ("tab:cyan", "tab:green")):
        ax.add_patch(Rectangle((c - n // 2 - 0.5, r - n // 2 - 0.5), n, n, fill=False, ec=col, lw=1))
        ax.plot([c], [r], "+", color=col, ms=8)
        ax.text(c, r - n // 2 - 4, f"{name} pattern", color=col, ha="center", va="bottom", fontsize=8)
    ax.set_title(f"Dual diffraction pattern, log10(1 + photons){note}\n{shot.source}", fontsize=9)
    ax.set_xlabel("detector column [px]")
    ax.set_ylabel("detector row [px]")
    fig.colorbar(im, ax=ax, shrink=0.8, label="log10(1 + photons)")
    _save(fig, path)


def figure_views(views, supports, pixel_m, path, *, titles=("left view", "right view")) -> None:
    """Amplitude of the phased views with the support outline (paper Figs. 2b, c).

    ``pixel_m`` None (no geometry): axes in pixels.
    """
    plt = _plt()
    views = np.asarray(views)
    fig, axes = plt.subplots(1, len(views), figsize=(5.2 * len(views), 4.6), squeeze=False)
    for k, ax in enumerate(axes[0]):
        amp = np.abs(views[k])
        ext, unit = _extent(amp.shape, pixel_m)
        im = ax.imshow(amp, cmap="gray", extent=ext)
        if supports is not None:
            ax.contour(
                np.asarray(supports[k]).astype(float),
                levels=[0.5],
                colors="tab:orange",
                linewidths=0.6,
                extent=[ext[0], ext[1], ext[3], ext[2]],
                origin="upper",
            )
        ax.set_title(f"{titles[k]} |amplitude| (support in orange)", fontsize=9)
        ax.set_xlabel(f"x [{unit}]")
        ax.set_ylabel(f"y [{unit}]")
        fig.colorbar(im, ax=ax, shrink=0.8, label="amplitude [a.u.]")
    _save(fig, path)


def figure_disparity(dl, dr, pixel_m, upsample, path) -> None:
    """Left and right disparity maps with colour bars [view pixels] (paper Fig. 3a).

    ``pixel_m`` None (no geometry): axes in view pixels.
    """
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.6))
    both = np.concatenate([dl[np.isfinite(dl)], dr[np.isfinite(dr)]]) / upsample
    lim = float(np.percentile(np.abs(both), 99)) if both.size else 1.0
    for ax, d, name in zip(axes, (dl, dr), VIEW_NAMES):
        ext, unit = _extent(d.shape, pixel_m, upsample)
        im = ax.imshow(
            np.asarray(d) / upsample,
            cmap="coolwarm",
            vmin=-lim,
            vmax=lim,
            extent=ext,
            interpolation="nearest",
        )
        ax.set_facecolor("0.15")
        valid = np.isfinite(d).mean() * 100
        ax.set_title(f"{name} disparity map ({valid:.1f} % of pixels valid)", fontsize=9)
        ax.set_xlabel(f"x [{unit}]")
        ax.set_ylabel(f"y [{unit}]")
        fig.colorbar(im, ax=ax, shrink=0.8, label="disparity [view pixels]")
    _save(fig, path)


def figure_depth(depth_nm, pixel_m, upsample, path) -> None:
    """Depth of the left map [um] (paper Fig. 3b seen from above)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.6, 4.8))
    d = np.asarray(depth_nm) / 1e3
    fin = d[np.isfinite(d)]
    lo, hi = np.percentile(fin, [1, 99]) if fin.size else (-1, 1)
    im = ax.imshow(
        d,
        cmap="viridis",
        vmin=lo,
        vmax=hi,
        extent=_extent(d.shape, pixel_m, upsample)[0],
        interpolation="nearest",
    )
    ax.set_facecolor("0.15")
    ax.set_title("depth map from eq. (1), left view", fontsize=9)
    ax.set_xlabel("x_left [um]")
    ax.set_ylabel("y [um]")
    fig.colorbar(im, ax=ax, shrink=0.8, label="depth z [um]")
    _save(fig, path)


def figure_cloud(points_nm, path, *, max_points: int = 20000, seed: int = 0) -> None:
    """3D view of the cleaned cloud coloured by depth, and a side view (paper Fig. 3b)."""
    plt = _plt()
    pts = np.asarray(points_nm) / 1e3
    if len(pts) > max_points:
        pts = pts[np.random.default_rng(seed).choice(len(pts), max_points, replace=False)]
    fig = plt.figure(figsize=(11, 5))
    ax = fig.add_subplot(1, 2, 1, projection="3d")
    sc = ax.scatter(pts[:, 0], pts[:, 1], pts[:, 2], s=0.6, c=pts[:, 2], cmap="viridis") if len(pts) else None
    ax.set_xlabel("x [um]")
    ax.set_ylabel("y [um]")
    ax.set_zlabel("z [um]")
    ax.view_init(elev=25, azim=-60)
    ax.set_title(f"point cloud ({len(points_nm)} points)", fontsize=9)
    ax2 = fig.add_subplot(1, 2, 2)
    if len(pts):
        ax2.scatter(pts[:, 0], pts[:, 2], s=0.4, c=pts[:, 2], cmap="viridis")
    ax2.set_xlabel("x [um]")
    ax2.set_ylabel("z [um]")
    ax2.set_title("side view (x, z)", fontsize=9)
    if sc is not None:
        fig.colorbar(sc, ax=[ax, ax2], shrink=0.7, label="z [um]")
    _save(fig, path)


def figure_surface(reconstruction, path, *, max_faces: int = 40000) -> None:
    """Rendered surface of the reconstructed volume, two viewpoints (paper Figs. 3b and 3d).

    For display the volume is block-averaged laterally until its smoothed marching-cubes surface has
    at most about ``max_faces`` triangles (the full-resolution mesh is ``surface.ply``).
    """
    plt = _plt()
    from mpl_toolkits.mplot3d.art3d import Poly3DCollection

    r = reconstruction
    vol = np.asarray(r.volume, dtype=np.float32)
    step = 1
    v, f = np.asarray(r.vertices_nm, dtype=float), np.asarray(r.faces, dtype=np.int64).reshape(-1, 3)
    while len(f) > max_faces and step < 16:
        step *= 2
        z, h, w = vol.shape
        small = (
            vol[:, : h // step * step, : w // step * step]
            .reshape(z, h // step, step, w // step, step)
            .mean(axis=(2, 4))
        )
        dz, dy, dx = r.voxel_nm
        origin = (r.origin_nm[0], r.origin_nm[1] + (step - 1) * dy / 2, r.origin_nm[2] + (step - 1) * dx / 2)
        v, f = surface_mesh(small, (dz, dy * step, dx * step), origin_nm=origin, level=0.25)
    v = v / 1e3
    fig = plt.figure(figsize=(11, 5))
    for i, (elev, azim) in enumerate(((30, -60), (8, -95))):
        ax = fig.add_subplot(1, 2, i + 1, projection="3d")
        if len(f):
            tri = v[f]
            zc = tri[:, :, 2].mean(axis=1)
            lo, hi = np.percentile(zc, [1, 99]) if len(zc) > 1 else (zc.min(), zc.max() + 1e-9)
            colours = plt.get_cmap("viridis")(np.clip((zc - lo) / max(hi - lo, 1e-9), 0, 1))
            ax.add_collection3d(Poly3DCollection(tri, facecolors=colours, edgecolor="none", linewidth=0))
            for setlim, k in ((ax.set_xlim, 0), (ax.set_ylim, 1), (ax.set_zlim, 2)):
                setlim(v[:, k].min(), v[:, k].max())
        ax.set_xlabel("x [um]")
        ax.set_ylabel("y [um]")
        ax.set_zlabel("z [um]")
        ax.view_init(elev=elev, azim=azim)
        ax.set_title(
            f"reconstructed surface (volume.h5; shown {step}x coarser)" if i == 0 else "side view", fontsize=9
        )
    _save(fig, path)


def figure_quality(quality: dict, path) -> None:
    """PRTF of each view against resolution, with the 1/e line (phasing quality)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 4))
    for name in ("left", "right"):
        q = quality.get(name, {})
        if "prtf_q_per_nm" in q:
            qq = np.asarray(q["prtf_q_per_nm"], dtype=float)
            ax.plot(qq * 1e3, q["prtf"], label=f"{name} view")
    ax.axhline(1 / np.e, color="0.5", ls="--", lw=0.8, label="1/e")
    ax.set_xlabel("spatial frequency q [1/um]")
    ax.set_ylabel("PRTF")
    ax.set_ylim(0, 1.05)
    ax.set_title("phase retrieval transfer function", fontsize=9)
    ax.legend(fontsize=8)
    _save(fig, path)


def figure_phasing_history(history: dict, path, *, names=("left", "right")) -> None:
    """R-factor on the measured pixels and support area per iteration, every run of every view.

    ``history``: :attr:`PhasingResult.history` (host): ``iterations`` (K,), ``rfactor`` and
    ``support_area`` (K, V, R), ``averaged`` (V, R). Runs in the average are coloured, the others grey.
    """
    plt = _plt()
    it = np.asarray(history["iterations"])
    rf = np.asarray(history["rfactor"], dtype=float)
    area = np.asarray(history["support_area"], dtype=float)
    kept = np.asarray(history.get("averaged", np.ones(rf.shape[1:], bool)), dtype=bool)
    nv = rf.shape[1]
    fig, axes = plt.subplots(2, nv, figsize=(5 * nv, 6), squeeze=False, sharex=True)
    for v in range(nv):
        name = names[v] if v < len(names) else f"view {v}"
        for r in range(rf.shape[2]):
            style = dict(lw=0.9, alpha=0.9) if kept[v, r] else dict(color="0.6", lw=0.6, alpha=0.6)
            axes[0, v].plot(it, rf[:, v, r], **style)
            axes[1, v].plot(it, area[:, v, r], **style)
        title = f"{name}: {int(kept[v].sum())} of {rf.shape[2]} runs kept (grey: left out)"
        axes[0, v].set_title(title, fontsize=9)
        axes[0, v].set_ylabel("R-factor (measured pixels)")
        axes[1, v].set_ylabel("support area [pixels]")
        axes[1, v].set_xlabel("iteration")
        axes[0, v].set_yscale("log")
    _save(fig, path)
