"""The files of each stage in an output directory, and ``summary.json`` (docs/format.md).

One writer per stage result, shared by every command that has that result (``xstereo run`` and
``demo`` write them all, ``xstereo phase`` the views, ``xstereo stereo`` the maps and, with a
geometry, the cloud). Each writes into an existing directory that the caller has staged
(:func:`~xstereo_gpu.io.staging.output_directory`) and returns the names of the files it wrote;
every file is itself written atomically.
"""

from __future__ import annotations

import datetime as _dt
import pathlib
import sys

import numpy as np

from . import __version__
from .config import PipelineOptions
from .figures import (
    figure_cloud,
    figure_depth,
    figure_disparity,
    figure_patterns,
    figure_phasing_history,
    figure_quality,
    figure_surface,
    figure_views,
)
from .geometry import StereoGeometry
from .io import write_json, write_mesh_ply, write_ply, write_tiff, write_views, write_volume_h5
from .results import CloudResult, Reconstruction, Results, StereoResult, ViewsResult

__all__ = [
    "write_run_files",
    "write_views_files",
    "phasing_history_arrays",
    "phasing_summary",
    "write_stereo_files",
    "write_cloud_files",
    "write_reconstruction_files",
    "summary_dict",
    "stereo_summary",
    "cloud_summary",
    "run_record",
]


def _figures_dir(folder: pathlib.Path) -> pathlib.Path:
    d = folder / "figures"
    d.mkdir(exist_ok=True)
    return d


def _map_metadata(upsample: int, geometry: StereoGeometry | None, extra: dict | None) -> dict:
    meta: dict = {"units": "matching-grid pixels", "upsample": int(upsample)}
    if geometry is not None:
        meta.update(
            pixel_size_nm=geometry.pixel_size_m * 1e9 / upsample,
            view_pixel_size_nm=geometry.pixel_size_m * 1e9,
            angles_deg=list(geometry.angles_deg),
        )
    meta.update(
        convention="a point at column x in the left view is at column x - d in the right view",
        program="xstereo-gpu",
        version=__version__,
    )
    return {**meta, **(extra or {})}


def run_record(options: PipelineOptions) -> dict:
    """The provenance every summary starts with: program, version, date, command line, options."""
    return {
        "program": "xstereo-gpu",
        "version": __version__,
        "date": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "command": " ".join(sys.argv),
        "profile": options.profile,
    }


def write_views_files(
    folder,
    views: ViewsResult,
    *,
    parameters: dict,
    quality: dict | None = None,
    figures: bool = True,
    filename: str = "views.cxi",
    titles=None,
    pixel_size_m: float | None = None,
) -> list[str]:
    """``views.cxi`` (CXI 1.6 images with supports, best eps per run, PRTF) and ``figures/views.png``.

    Parameters
    ----------
    views : ViewsResult
        Host or device; ``views.names`` name the CXI images.
    parameters : dict
        Provenance stored with every image (the options, the source).
    quality : dict, optional
        :meth:`Pipeline.quality`; its PRTF curves are stored next to the views.
    pixel_size_m : float, optional
        The view pixel [m] when the views have no stereo geometry (one phased pattern); NaN: unknown.
    """
    folder = pathlib.Path(folder)
    pixel = (
        pixel_size_m
        if pixel_size_m is not None
        else np.nan
        if views.geometry is None
        else views.geometry.pixel_size_m
    )
    extra = {"best_eps": views.best_eps, **phasing_history_arrays(views.history)}
    if quality is not None and "prtf" in quality.get("left", {}):
        extra["prtf"] = np.asarray([quality[v]["prtf"] for v in ("left", "right")], dtype=np.float32)
        extra["prtf_q_per_nm"] = np.asarray(quality["left"]["prtf_q_per_nm"], dtype=np.float64)
    write_views(
        folder / filename,
        views.views,
        supports=views.supports,
        pixel_size_m=pixel,
        parameters=parameters,
        names=tuple(views.names),
        extra=extra,
    )
    files = [filename]
    if figures:
        stem = pathlib.Path(filename).stem
        titles = titles or tuple(f"{n} view" for n in views.names)
        figure_views(
            np.asarray(views.views),
            np.asarray(views.supports),
            pixel if np.isfinite(pixel) else None,
            _figures_dir(folder) / f"{stem}.png",
            titles=titles,
        )
        files.append(f"figures/{stem}.png")
        if "rfactor" in (views.history or {}):
            figure_phasing_history(
                views.history, _figures_dir(folder) / "phasing.png", names=tuple(views.names)
            )
            files.append("figures/phasing.png")
    return files


def phasing_history_arrays(history: dict | None) -> dict:
    """The per-run phasing records stored in ``views.cxi`` (per view, leading axis V): ``rfactor_history``
    and ``support_area_history`` (V, K, R), ``r_factor`` (V, R) of each run's best iterate, ``averaged``
    (V, R) uint8 (1 = in the average), ``collapses`` (V, R); and ``history_iterations`` (K,) in
    ``result_1``."""
    h = history or {}
    if "rfactor" not in h:
        return {}
    out = {
        "rfactor_history": np.moveaxis(np.asarray(h["rfactor"], dtype=np.float32), 1, 0),
        "support_area_history": np.moveaxis(np.asarray(h["support_area"], dtype=np.int64), 1, 0),
        "r_factor": np.asarray(h["r_factor"], dtype=np.float32),
        "averaged": np.asarray(h["averaged"], dtype=np.uint8),
    }
    if "collapses" in h:
        out["collapses"] = np.asarray(h["collapses"], dtype=np.int32)
    return out


def phasing_summary(history: dict, options) -> dict:
    """The per-view selection of the runs for ``summary.json``: R-factor and Fourier error of each run's
    best iterate on the measured pixels, the runs kept and why the others were left out, collapse-guard
    counts."""
    out = []
    rf = np.asarray(history.get("r_factor", []), dtype=float)
    for v in range(rf.shape[0] if rf.ndim == 2 else 0):
        kept = np.asarray(history["averaged"][v], dtype=bool)
        why = history.get("excluded")
        out.append(
            {
                "r_factor": [round(float(x), 5) for x in rf[v]],
                "fourier_error": [round(float(x), 5) for x in np.asarray(history["fourier_error"][v])],
                "runs_kept": [int(r) for r in np.nonzero(kept)[0]],
                "r_factor_kept_median": float(np.median(rf[v][kept])) if kept.any() else None,
                "rule": f"Fourier error <= (1 + {options.average_tolerance:g}) x the best run's "
                "(runs whose support spread past the autocorrelation's area ranked last)",
                "left_out": {str(r): str(why[v][r]) for r in np.nonzero(~kept)[0]} if why is not None else {},
                "collapses": [int(c) for c in np.asarray(history.get("collapses", np.zeros_like(kept)))[v]],
            }
        )
    return {"select_by": options.select_by, "views": out}


def write_stereo_files(
    folder,
    stereo: StereoResult,
    geometry: StereoGeometry | None = None,
    *,
    figures: bool = True,
    metadata: dict | None = None,
) -> list[str]:
    """``disparity_left.tif``, ``disparity_right.tif`` (float32, NaN invalid) and "
    "``figures/disparity.png``."""
    folder = pathlib.Path(folder)
    meta = _map_metadata(stereo.upsample, geometry, metadata)
    for side in ("left", "right"):
        write_tiff(
            folder / f"disparity_{side}.tif",
            np.asarray(getattr(stereo, f"disparity_{side}"), np.float32),
            metadata=meta,
        )
    files = ["disparity_left.tif", "disparity_right.tif"]
    if figures:
        pix = None if geometry is None else geometry.pixel_size_m
        figure_disparity(
            np.asarray(stereo.disparity_left),
            np.asarray(stereo.disparity_right),
            pix,
            stereo.upsample,
            _figures_dir(folder) / "disparity.png",
        )
        files.append("figures/disparity.png")
    return files


def write_cloud_files(
    folder,
    cloud: CloudResult,
    geometry: StereoGeometry,
    upsample: int,
    *,
    figures: bool = True,
    metadata: dict | None = None,
) -> list[str]:
    """``depth.tif`` (float32 nm), ``cloud.ply`` (the cleaned cloud with confidence and view) and figures."""
    folder = pathlib.Path(folder)
    meta = {**_map_metadata(upsample, geometry, metadata), "units": "nm (depth z of the left map)"}
    depth = np.asarray(cloud.depth, dtype=np.float32)
    write_tiff(folder / "depth.tif", depth, metadata=meta)
    kept = np.asarray(cloud.kept)
    cleaned = np.asarray(cloud.points_nm)[kept]
    write_ply(
        folder / "cloud.ply",
        cleaned,
        scalars={
            "confidence": np.asarray(cloud.confidence)[kept],
            "view": np.asarray(cloud.view_index)[kept].astype(np.float32),
        },
    )
    files = ["depth.tif", "cloud.ply"]
    if figures:
        figs = _figures_dir(folder)
        figure_depth(depth, geometry.pixel_size_m, upsample, figs / "depth.png")
        figure_cloud(cleaned, figs / "cloud.png")
        files += ["figures/depth.png", "figures/cloud.png"]
    return files


def write_reconstruction_files(
    folder, rec: Reconstruction | None, *, sample: str = "", figures: bool = True
) -> list[str]:
    """``volume.h5`` and ``surface.ply`` when the cloud was interpolated (and ``figures/surface.png``)."""
    if rec is None or rec.volume is None:
        return []
    folder = pathlib.Path(folder)
    write_volume_h5(
        folder / "volume.h5",
        rec.volume,
        voxel_size_nm=rec.voxel_nm,
        origin_nm=rec.origin_nm,
        attrs={
            "program": "xstereo-gpu",
            "version": __version__,
            "sample": sample,
            "description": "occupancy after natural-neighbour interpolation and carving",
        },
    )
    write_mesh_ply(
        folder / "surface.ply",
        rec.vertices_nm,
        rec.faces,
        comments=("xstereo-gpu surface mesh (marching cubes of volume.h5)",),
    )
    files = ["volume.h5", "surface.ply"]
    if figures and rec.vertices_nm is not None and len(rec.faces):
        figure_surface(rec, _figures_dir(folder) / "surface.png")
        files.append("figures/surface.png")
    return files


def _rectification_summary(rect) -> dict | None:
    if rect is None:
        return None
    res = np.asarray(rect.residual)
    return {
        "F": np.asarray(rect.F).tolist(),
        "H_left": np.asarray(rect.H_left).tolist(),
        "H_right": np.asarray(rect.H_right).tolist(),
        "matches": int(len(rect.points_left)),
        "residual_rms_px": float(np.sqrt(np.mean(np.square(res)))) if len(res) else None,
    }


def stereo_summary(stereo: StereoResult, options: PipelineOptions) -> dict:
    """The ``stereo`` section of ``summary.json``."""
    valid_l, valid_r = stereo.valid_fractions()
    return {
        "method": options.match.method,
        "cost": options.match.cost,
        "maps": stereo.modes,
        "image": options.stereo.image,
        "rectification": _rectification_summary(stereo.rectification),
        "upsample": int(stereo.upsample),
        "thresholds": stereo.thresholds,
        "valid_fraction_left": valid_l,
        "valid_fraction_right": valid_r,
        "block": options.match.block,
        "range": [options.match.dmin, options.match.dmax],
    }


def cloud_summary(cloud: CloudResult, options: PipelineOptions) -> dict:
    """The ``cloud`` section of ``summary.json``."""
    return {
        "points_before_outlier_removal": int(len(cloud.points_nm)),
        "points": int(np.asarray(cloud.kept).sum()),
        "k": options.cloud.k,
        "t": options.cloud.t,
    }


def _reconstruction_summary(r: Reconstruction | None) -> dict:
    if r is None:
        return {}
    out = {"planes": r.planes}
    if r.volume is not None:
        out.update(
            volume_shape_zyx=list(r.volume.shape),
            voxel_nm_zyx=list(r.voxel_nm),
            origin_nm_zyx=list(r.origin_nm),
            occupied_voxels=int(r.volume.sum()),
            mesh_vertices=int(len(r.vertices_nm)),
            mesh_faces=int(len(r.faces)),
        )
    return out


def summary_dict(results: Results, *, shot=None, files=(), extra: dict | None = None) -> dict:
    """The content of ``summary.json`` of a whole run (documented in docs/format.md)."""
    g = results.geometry
    report = g.report()
    report["pattern_size"] = int(results.views.views.shape[-1])
    if shot is not None:
        report.update(
            wavelength_nm=shot.wavelength_m * 1e9,
            distance_mm=shot.distance_m * 1e3,
            detector_pixel_um=shot.detector_pixel_m * 1e6,
        )
    o = results.options
    eps = np.asarray(results.views.best_eps)
    out = {
        **run_record(o),
        "input": results.source,
        "sample": results.sample,
        "device": results.device,
        "geometry": report,
        "timings_s": {k: round(v, 4) for k, v in results.timings.items()},
        "phasing": {
            "algorithm": o.phasing.algorithm,
            "runs": o.phasing.runs,
            "iterations": o.phasing.iterations,
            "final_er": o.phasing.final_er,
            "best_eps_median": [float(np.median(e)) for e in eps] if eps.size else None,
            "runs_averaged": [int(a.sum()) for a in np.asarray(results.views.history.get("averaged", []))],
            **(
                {"selection": phasing_summary(results.views.history, o.phasing)}
                if "r_factor" in results.views.history
                else {}
            ),
        },
        **({"align": results.views.alignment} if results.views.alignment is not None else {}),
        "stereo": stereo_summary(results.stereo, o),
        "cloud": cloud_summary(results.cloud, o),
        "reconstruct": _reconstruction_summary(results.reconstruction),
        "options": o.to_dict(),
        "outputs": sorted(files),
    }
    if results.quality is not None:
        out["quality"] = results.quality
        res_nm = results.quality.get("resolution_nm")
        if res_nm is not None:
            report.update(g.report(res_nm[0] * 1e-9))
    if results.hdr is not None:
        out["hdr"] = results.hdr
    if results.accuracy is not None:
        out["accuracy"] = results.accuracy
    if extra:
        out.update(extra)
    return out


def write_run_files(
    results: Results, folder, *, shot=None, figures: bool = True, extra_summary: dict | None = None
) -> dict:
    """Write the files of a run into the existing, empty directory ``folder``; returns the summary.

    Files: ``views.cxi``, ``disparity_left.tif``, ``disparity_right.tif``, ``depth.tif``, ``cloud.ply``,
    ``volume.h5`` and ``surface.ply`` (when interpolated), ``options.toml``, ``figures/*.png`` and
    ``summary.json`` (last). The directory as a whole is made atomic by staging ``folder``
    (:meth:`~xstereo_gpu.pipeline.Pipeline.export`, or the CLI, which stages it before the compute).
    """
    out = pathlib.Path(folder)
    g, o = results.geometry, results.options
    files = write_views_files(
        out, results.views, parameters=o.to_dict(), quality=results.quality, figures=figures
    )
    files += write_stereo_files(out, results.stereo, g, figures=figures)
    files += write_cloud_files(out, results.cloud, g, results.stereo.upsample, figures=figures)
    (out / "options.toml").write_text(o.to_toml())
    files.append("options.toml")
    files += write_reconstruction_files(out, results.reconstruction, sample=results.sample, figures=figures)
    if figures:
        if shot is not None:
            figure_patterns(shot, _figures_dir(out) / "patterns.png")
            files.append("figures/patterns.png")
        if results.quality is not None:
            figure_quality(results.quality, _figures_dir(out) / "prtf.png")
            files.append("figures/prtf.png")
    files.append("summary.json")
    summary = summary_dict(results, shot=shot, files=files, extra=extra_summary)
    write_json(out / "summary.json", summary)
    return summary
