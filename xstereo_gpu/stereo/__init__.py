"""Stereo stage: pre-processing, rectification, block matching, left-right consistency, depth and points."""

from .correspondence import epipolar_matches, ncc_surfaces
from .depth import CloudPoints, depth_map, lr_consistency, points_from_disparity
from .disparity import MatchResult, block_match, texture_map
from .fundamental import fundamental_matrix
from .homography import apply_homography, original_coordinates, rectify, vertical_residual
from .preprocess import (
    PreprocessResult,
    background_mask,
    matching_coordinate,
    preprocess,
    upsample_mask,
    view_coordinate,
)

# .rectify before .homography: loading the submodule binds the name `rectify` to it, and the name belongs to
# the warp function
from .rectify import RectifyResult, rectify_pair, rectifying_homographies
from .sgm import semi_global_match

__all__ = [
    "PreprocessResult",
    "preprocess",
    "background_mask",
    "upsample_mask",
    "view_coordinate",
    "matching_coordinate",
    "RectifyResult",
    "fundamental_matrix",
    "rectifying_homographies",
    "rectify",
    "rectify_pair",
    "epipolar_matches",
    "ncc_surfaces",
    "apply_homography",
    "original_coordinates",
    "vertical_residual",
    "MatchResult",
    "block_match",
    "texture_map",
    "semi_global_match",
    "CloudPoints",
    "lr_consistency",
    "points_from_disparity",
    "depth_map",
]
