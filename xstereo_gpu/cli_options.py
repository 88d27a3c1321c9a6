"""The ``xstereo`` command's pipeline flags, generated from the fields of the option dataclasses.

A stage field in :mod:`xstereo_gpu.config` becomes a flag when its metadata names one (``config._flag``):
the help text and the choices (a config constant) come from that metadata, the type and the number of
values from the field's annotation (``int``, ``float``, ``str``, ``X | None``, ``tuple[X, X]``: two
values). Fields naming the same flag take one value each (``--range DMIN DMAX`` sets ``match.dmin`` and
``match.dmax``). :data:`CONVERT` states the flags whose value is not the field's value as typed.
"""

from __future__ import annotations

import dataclasses
import pathlib
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from .config import PipelineOptions
from .errors import InputError

__all__ = ["BACKENDS", "CONVERT", "DEMO_STARTS", "PIPELINE_FLAGS", "STAGE_GROUPS", "Flag", "read_points"]

#: Array backends (``--backend``; :func:`xstereo_gpu.backend.select_backend`).
BACKENDS = ("auto", "numpy", "cupy")
#: Where ``xstereo demo`` starts: phasing the simulated patterns, or from provided views.
DEMO_STARTS = ("pattern", "views")
#: Which subcommands take a stage's flags: "phasing" (run, demo, phase) or "stereo" (run, demo, stereo).
STAGE_GROUPS = {
    "phasing": "phasing",
    "preprocess": "stereo",
    "match": "stereo",
    "stereo": "stereo",
    "cloud": "stereo",
}


def read_points(path) -> tuple:
    """Rectification point pairs from a text file: one ``x_left y_left x_right y_right`` row per pair."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise InputError(
            str(path), "no such file", "a text file of point pairs (x_left y_left x_right y_right)"
        )
    try:
        pts = np.loadtxt(path, dtype=np.float64, delimiter=None, comments="#", ndmin=2)
    except ValueError as exc:
        raise InputError(
            str(path), f"unreadable numbers ({exc})", "rows of 4 numbers: x_left y_left x_right y_right"
        ) from None
    if pts.ndim != 2 or pts.shape[1] != 4 or pts.shape[0] < 4 or not np.isfinite(pts).all():
        raise InputError(str(path), f"shape {pts.shape}", "at least 4 rows of 4 finite numbers (view pixels)")
    return tuple(tuple(r) for r in pts.tolist())


#: Flags whose value is not the field's value: the ``stage__field`` changes they make instead.
CONVERT: dict[str, Callable[[Any], dict[str, Any]]] = {
    "--points": lambda path: {"stereo__rectify_points": read_points(path), "stereo__rectify": True},
}


@dataclass(frozen=True)
class Flag:
    """One pipeline flag and the ``stage__field`` names (:meth:`PipelineOptions.replace`) it sets."""

    flag: str
    #: ``("match__dmin", "match__dmax")`` for ``--range``; one name for the other flags.
    targets: tuple[str, ...]
    #: Keywords of ``add_argument``: ``help``, ``type``, ``nargs``, ``metavar``, ``choices``.
    argparse: dict[str, Any]

    @property
    def stage(self) -> str:
        return self.targets[0].split("__")[0]

    @property
    def group(self) -> str:
        """``"phasing"`` or ``"stereo"``: the subcommands that take this flag (:data:`STAGE_GROUPS`)."""
        return STAGE_GROUPS[self.stage]

    @property
    def dest(self) -> str:
        return self.flag.lstrip("-").replace("-", "_")

    def changes(self, value) -> dict[str, Any]:
        """The ``stage__field`` values of the parsed ``value``."""
        if self.flag in CONVERT:
            return CONVERT[self.flag](value)
        if len(self.targets) > 1:
            return dict(zip(self.targets, value, strict=True))
        return {self.targets[0]: tuple(value) if isinstance(value, list) else value}


def _value_type(tp, where: str) -> tuple[type, int | None]:
    """``(type, nargs)`` of one value on the command line for the annotation ``tp``."""
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return _value_type(args[0], where)
    if tp in (int, float, str):
        return tp, None
    args = typing.get_args(tp)
    if typing.get_origin(tp) is tuple and args and Ellipsis not in args and len(set(args)) == 1:
        return args[0], len(args)
    raise TypeError(f"{where}: no command-line form for {tp}; give type= in the field's metadata")


def _pipeline_flags() -> tuple[Flag, ...]:
    """The flags declared in the metadata of the stage fields, in the order of the stages and fields."""
    declared: dict[str, list] = {}  # flag -> [(stage__field, annotation, metadata), ...]
    stage_types = typing.get_type_hints(PipelineOptions)
    for stage in dataclasses.fields(PipelineOptions):
        if not dataclasses.is_dataclass(stage_types[stage.name]):
            continue  # "profile"
        hints = typing.get_type_hints(stage_types[stage.name])
        for f in dataclasses.fields(stage_types[stage.name]):
            if "cli" not in f.metadata:
                continue
            if stage.name not in STAGE_GROUPS:
                raise TypeError(f"{f.metadata['cli']}: STAGE_GROUPS names no subcommands for [{stage.name}]")
            declared.setdefault(f.metadata["cli"], []).append(
                (f"{stage.name}__{f.name}", hints[f.name], f.metadata)
            )
    flags = []
    for flag, decl in declared.items():
        targets = tuple(target for target, _, _ in decl)
        kw = {k: v for _, _, meta in decl for k, v in meta.items() if k not in ("cli", "metavar") and v != ""}
        metavars = tuple(meta["metavar"] for _, _, meta in decl if "metavar" in meta)
        if metavars:
            kw["metavar"] = metavars if len(decl) > 1 else metavars[0]
        if "type" not in kw:
            kinds = {_value_type(tp, f"{flag} ({target})") for target, tp, _ in decl}
            if len(kinds) != 1:
                raise TypeError(f"{flag}: its fields {list(targets)} take values of different types")
            kw["type"], nargs = kinds.pop()
            if len(decl) > 1:  # one value per field
                if nargs is not None:
                    raise TypeError(f"{flag}: its fields {list(targets)} must take one value each")
                nargs = len(decl)
            if nargs is not None:
                kw["nargs"] = nargs
        flags.append(Flag(flag, targets, kw))
    return tuple(flags)


#: Every pipeline flag, in the order of the stages and their fields.
PIPELINE_FLAGS = _pipeline_flags()
