"""The cloud post-processing of the paper's Methods: planes, natural-neighbour surface, carving, volume, mesh.

:func:`reconstruct` takes the cleaned cloud of the stereo stage and, as the sample's recipe asks
(:class:`~xstereo_gpu.config.ReconstructOptions`), fits one or two RANSAC planes, adds the frame
points, interpolates each surface with discrete Sibson interpolation, voxelises, carves the space both
views show empty and extracts the surface mesh.
"""

from __future__ import annotations

import numpy as np

from ..backend import get_array_module, to_host
from ..config import ReconstructOptions
from ..geometry import StereoGeometry
from ..progress import Progress
from ..results import Reconstruction, StereoResult
from ..stereo.preprocess import upsample_mask
from .segment import segment_planes
from .volume import VolumeGrid, cloud_to_volume, surface_mesh

__all__ = ["Reconstruction", "reconstruct", "empty_space"]


def empty_space(stereo: StereoResult, *, level: float = 0.8):
    """Where the views show transmission 1 (the space carving removes), on the matching grid.

    Binary views: their white pixels (the paper's empty space). Semi-transparent views: the phased
    waves of a sample whose membrane fills the field are ``t - t_membrane`` (the zero order is behind
    the beamstop); bare membrane is ~0 and the empty space is the largest amplitude,
    ``|1 - t_membrane|``: pixels above ``level`` times each view's 99.5th percentile.

    Returns
    -------
    (2, uH, uW) bool, device of the stereo result
    """
    if stereo.pairs[0].mode == "binary":
        return stereo.images > 0.5
    amplitude = stereo.amplitude
    xp = get_array_module(amplitude)
    ref = xp.percentile(amplitude.reshape(amplitude.shape[0], -1), 99.5, axis=1).reshape(-1, 1, 1)
    return upsample_mask(amplitude > level * ref, stereo.upsample)


def _plane_dict(plane, inliers: int) -> dict:
    return {
        "normal": [float(v) for v in plane.normal],
        "offset_nm": float(plane.offset),
        "rms_nm": float(plane.rms),
        "tilt_deg": float(plane.tilt_deg),
        "inliers": int(inliers),
    }


def reconstruct(
    cloud_nm,
    geometry: StereoGeometry,
    options: ReconstructOptions | None = None,
    *,
    view_shape,
    empty=None,
    upsample: int = 1,
    progress: Progress | None = None,
) -> Reconstruction:
    """Planes, natural-neighbour interpolation, carving and a surface mesh from a cleaned cloud.

    ``options.planes`` = 1: RANSAC plane of the membrane cut, a frame on it, one
    interpolated surface; 2: two RANSAC planes, each inlier cloud interpolated and carved on its own,
    the volumes joined (the phase cross); 0: no plane. Without ``interpolate`` only the planes are fitted.

    Parameters
    ----------
    cloud_nm : (M, 3) float64
        Cleaned cloud  [nm], NumPy or CuPy.
    empty : (2, uH, uW) bool, optional
        Pixels of the views that show transmission 1 (carving); ``upsample`` = their grid factor.
    """
    say = progress or Progress(enabled=False)
    rec = options or ReconstructOptions()
    xp = get_array_module(cloud_nm)
    out = Reconstruction()
    dz = geometry.voxel_depth_m * 1e9
    thr = rec.ransac_threshold_voxels * dz
    if len(cloud_nm) < 10:
        return out
    groups = [cloud_nm]
    planes = [None]
    if rec.planes:
        found, labels = segment_planes(cloud_nm, rec.planes, threshold_nm=thr, seed=rec.seed)
        out.planes = [_plane_dict(pl, int((labels == k).sum())) for k, pl in enumerate(found)]
        say.note(
            "planes: "
            + "; ".join(f"tilt {d['tilt_deg']:.1f} deg, {d['inliers']} inliers" for d in out.planes)
        )
        if rec.planes == 2 and len(found) == 2:
            groups = [cloud_nm[labels == k] for k in range(2)]
            planes = list(found)
        else:
            planes = [found[0]] if found else [None]
    if not rec.interpolate:
        return out
    kw = dict(
        view_shape=tuple(view_shape),
        upsample=upsample,
        distance_um=rec.carve_distance_um,
        dz_nm=dz,
        seed=rec.seed,
        ransac_threshold_nm=thr,
    )
    if empty is not None:
        kw.update(empty_left=empty[0], empty_right=empty[1])
    # the frame goes on the membrane (the plane closest to the detector plane); other components (the
    # phase cross's lid) are interpolated only near their own points, so that they keep their outline
    tilts = [90.0 if pl is None else pl.tilt_deg for pl in planes]
    membrane = int(np.argmin(tilts))
    dr = geometry.pixel_size_m * 1e9
    vols = []
    for k, (pts, plane) in enumerate(zip(groups, planes)):
        if len(pts) < 10:
            continue
        if k == membrane:
            vols.append(cloud_to_volume(pts, geometry, plane=plane, frame=rec.planes > 0, **kw))
        else:
            vols.append(cloud_to_volume(pts, geometry, plane=plane, frame=False, max_radius_nm=3 * dr, **kw))
    if not vols:
        return out
    z0 = min(v.grid.origin_nm[0] for v in vols)
    z1 = max(v.grid.origin_nm[0] + (v.grid.shape[0] - 1) * dz for v in vols)
    grid = VolumeGrid.for_views(geometry, tuple(view_shape), (z0, z1), dz_nm=dz)
    volume = xp.zeros(grid.shape, dtype=bool)
    for v in vols:
        k0 = int(round((v.grid.origin_nm[0] - grid.origin_nm[0]) / dz))
        volume[k0 : k0 + v.grid.shape[0]] |= v.volume
    say.note(
        f"volume {grid.shape} voxels of {grid.voxel_nm[2]:.1f} x {grid.voxel_nm[1]:.1f} x {dz:.1f} nm, "
        f"{int(volume.sum())} occupied after carving"
    )
    verts, faces = surface_mesh(volume, grid.voxel_nm, origin_nm=grid.origin_nm)
    out.volume = to_host(volume)
    out.voxel_nm, out.origin_nm = grid.voxel_nm, grid.origin_nm
    out.vertices_nm, out.faces = verts, faces
    return out
