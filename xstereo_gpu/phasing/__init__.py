"""Phase retrieval of the two views: prepare, support, algorithms, batched runs, alignment.

Data flow: :func:`split_patterns` (or :func:`single_pattern`) turns a frame into intensities
``(V, N, N)`` float32 and a valid mask ``(V, N, N)`` bool; :func:`phase_retrieval` phases all runs
of all views on one ``(V, R, N, N)`` complex64 array and returns the coherent average of the aligned
best iterates (HDR series merged first by :func:`merge_exposures`); :func:`prtf`,
:func:`edge_resolution` and :func:`view_error` measure the quality of the result; :func:`align_views` brings
the two averaged views into one frame and orientation.
"""

from .algorithms import (
    Workspace,
    dm_step,
    er_step,
    fourier_constraint,
    hio_step,
    modulus_projection,
    squared_norm,
    support_projection,
)
from .align import align_runs, align_views, centre_shift, fourier_shift, register_translation, twin
from .hdr import HDRMerge, merge_exposures
from .prepare import crop_pattern, single_pattern, split_patterns
from .quality import edge_resolution, prtf, prtf_resolution, view_error
from .runs import PhaseRetrieval, PhasingResult, phase_retrieval, split_phasing
from .support import autocorrelation_support, shrink_wrap

__all__ = [
    "split_patterns",
    "single_pattern",
    "crop_pattern",
    "autocorrelation_support",
    "shrink_wrap",
    "fourier_constraint",
    "Workspace",
    "modulus_projection",
    "support_projection",
    "squared_norm",
    "dm_step",
    "hio_step",
    "er_step",
    "PhaseRetrieval",
    "PhasingResult",
    "phase_retrieval",
    "split_phasing",
    "register_translation",
    "fourier_shift",
    "twin",
    "centre_shift",
    "align_runs",
    "align_views",
    "merge_exposures",
    "HDRMerge",
    "prtf",
    "prtf_resolution",
    "edge_resolution",
    "view_error",
]
