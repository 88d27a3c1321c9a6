"""File input/output: shot files, third-party CXI, TIFF/NPY patterns, views.cxi and run outputs.

Every layout is documented in docs/format.md. Readers raise :class:`~xstereo_gpu.errors.InputError`
naming the file (and dataset); writers write to a temporary name and rename when complete.
"""

from .cxi import read_shot, read_views, write_shot, write_views
from .export import read_tiff, write_json, write_ply, write_tiff
from .images import Pattern, read_image, read_mask, read_pattern, read_support
from .staging import atomic_file, check_file_target, check_output_path, output_directory
from .volume_file import read_volume_h5, write_mesh_ply, write_volume_h5

__all__ = [
    "read_shot",
    "write_shot",
    "Pattern",
    "read_pattern",
    "read_image",
    "read_mask",
    "read_support",
    "read_views",
    "write_views",
    "atomic_file",
    "output_directory",
    "check_output_path",
    "check_file_target",
    "write_tiff",
    "read_tiff",
    "write_ply",
    "write_json",
    "write_volume_h5",
    "read_volume_h5",
    "write_mesh_ply",
]
