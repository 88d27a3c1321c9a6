"""Point-cloud stage: outlier removal, segmentation and plane fits, natural-neighbour interpolation,
voxels, empty-space carving and the surface mesh."""

from .interpolate import discrete_sibson, rasterise_samples, sibson_grid
from .outliers import knn_mean_distance, remove_outliers, statistical_outlier_filter
from .segment import Plane, components, fit_plane, label_regions, ransac_plane, segment_planes
from .volume import (
    CloudVolume,
    VolumeGrid,
    carve,
    cloud_to_volume,
    empty_space,
    frame_points,
    height_field,
    surface_mesh,
    voxelise,
)

__all__ = [
    "knn_mean_distance",
    "remove_outliers",
    "statistical_outlier_filter",
    "Plane",
    "fit_plane",
    "ransac_plane",
    "segment_planes",
    "components",
    "label_regions",
    "rasterise_samples",
    "discrete_sibson",
    "sibson_grid",
    "VolumeGrid",
    "frame_points",
    "height_field",
    "voxelise",
    "empty_space",
    "carve",
    "surface_mesh",
    "CloudVolume",
    "cloud_to_volume",
]
