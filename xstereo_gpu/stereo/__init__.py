"""Stereo stage: pre-processing, rectification, block matching, left-right consistency, depth and points."""

from .depth import CloudPoints, depth_map, lr_consistency, points_from_disparity
from .disparity import MatchResult, block_match, texture_map
from .sgm import semi_global_match
from .preprocess import (PreprocessResult, background_mask, matching_coordinate, preprocess, upsample_mask,
                         view_coordinate)
from .rectify import (RectifyResult, apply_homography, fundamental_matrix,
                      original_coordinates, rectify, rectify_pair, rectifying_homographies, vertical_residual, epipolar_matches, ncc_surfaces)

__all__ = [
    "PreprocessResult", "preprocess", "background_mask", "upsample_mask", "view_coordinate", "matching_coordinate",
    "RectifyResult", "fundamental_matrix", "rectifying_homographies",
    "rectify", "rectify_pair", "epipolar_matches", "ncc_surfaces", "apply_homography", "original_coordinates", "vertical_residual",
    "MatchResult", "block_match", "texture_map", "semi_global_match",
    "CloudPoints", "lr_consistency", "points_from_disparity", "depth_map",
]
