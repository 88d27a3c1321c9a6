"""Stereo stage: pre-processing, block matching, left-right consistency, depth and points."""

from .depth import CloudPoints, depth_map, lr_consistency, points_from_disparity
from .disparity import MatchResult, block_match, texture_map
from .preprocess import PreprocessResult, matching_coordinate, preprocess, view_coordinate

__all__ = [
    "PreprocessResult", "preprocess", "view_coordinate", "matching_coordinate",
    "MatchResult", "block_match", "texture_map",
    "CloudPoints", "lr_consistency", "points_from_disparity", "depth_map",
]
