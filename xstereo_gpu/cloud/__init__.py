"""Point-cloud stage: statistical outlier removal (k nearest neighbours)."""

from .outliers import knn_mean_distance, remove_outliers, statistical_outlier_filter

__all__ = ["knn_mean_distance", "remove_outliers", "statistical_outlier_filter"]
