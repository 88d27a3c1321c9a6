"""What the command line tells the user beyond the results: errors put in context, and warnings.

* :func:`with_source` re-raises an error of a stage (``phasing.intensities: found no signal in view
  0``) naming the input it came from (``shot.cxi:/entry_1/data_1/data (left pattern): ...``);
* :func:`check_matches` turns disparity maps without a single valid pixel into an error naming the
  stage and the options to change, instead of an empty cloud and exit status 0;
* :func:`recipe_warning` says which recipe a run uses when the sample name chooses none;
* :func:`warning_printer` prints warnings as one ``xstereo CMD: warning: ...`` line on stderr
  (:func:`run_with_warnings` runs a subcommand with it).
"""

from __future__ import annotations

import pathlib
import re
import sys

import numpy as np

from .config import RECIPE_NAMES, SAMPLE_NAMES
from .errors import InputError, InputWarning, warn

__all__ = ["with_source", "check_matches", "recipe_warning", "warning_printer", "run_with_warnings"]

#: Leading parts of the ``where`` of errors raised by the stages about the input's data.
_DATA_STAGES = ("phasing", "split_patterns", "merge_exposures", "single_pattern")


def with_source(
    exc: InputError, source: str, dataset: str = "", *, note: str = "", views: tuple | None = None
) -> InputError:
    """``exc`` naming the input it came from: ``shot.cxi:/entry_1/data_1/data (left pattern): phasing...``.

    Parameters
    ----------
    exc : InputError
        Raised by a stage; its ``where`` names an internal field (``phasing.intensities``).
    source : str
        The input file (or files).
    dataset : str
        The HDF5 dataset the data came from, added for errors about the data (``_DATA_STAGES``).
    note : str
        Added in brackets after the dataset (e.g. the crop that was phased).
    views : tuple of str, optional
        View names: "view k" in the message then names the pattern (``views[k]`` pattern).

    Returns
    -------
    InputError
        ``exc`` itself when it already names ``source``.
    """
    if source in exc.where:
        return exc
    where = source
    if exc.where.split(".")[0] in _DATA_STAGES:
        where = f"{source}:{dataset}" if dataset else source
        m = re.search(r"\bview (\d+)", exc.found)
        if views is not None and m and int(m.group(1)) < len(views):
            note = note or f"{views[int(m.group(1))]} pattern"
        if note:
            where += f" ({note})"
    return InputError(f"{where}: {exc.where}", exc.found, exc.expected)


def check_matches(disparity_left, disparity_right, options, where: str, *, kept=None) -> None:
    """Raise :class:`InputError` when neither disparity map has a valid (finite) pixel.

    Parameters
    ----------
    disparity_left, disparity_right : ndarray
        Consistent disparity maps, NaN where invalid (host arrays).
    options : PipelineOptions
        The options used, quoted in the message.
    where : str
        The stage (and inputs) for the message.
    kept : path-like, optional
        Output directory already written; when it holds ``views.cxi`` the message says how to
        match those views again.
    """
    dl, dr = np.asarray(disparity_left), np.asarray(disparity_right)
    if bool(np.isfinite(dl).any() or np.isfinite(dr).any()):
        return
    m, p = options.match, options.preprocess
    thr = f", thresholds {p.thresholds[0]:g}/{p.thresholds[1]:g}" if p.mode == "binary" else ""
    expected = (
        "some valid matches: widen or move the search with --range DMIN DMAX, try another --block, "
        "--thresholds LEFT RIGHT, --preprocess or --method, or the sample's --recipe"
    )
    views = None if kept is None else pathlib.Path(kept) / "views.cxi"
    if views is not None and views.exists():
        expected += (
            f"; the phased views are kept in {views}: match them again with "
            f"`xstereo stereo {views} {views} -o DIR --range DMIN DMAX ...`"
        )
    raise InputError(
        where,
        f"0 valid disparities: none of the {dl.size} matching-grid pixels of either map "
        f"passed matching and the left-right check (method {m.method}, block {m.block}, "
        f"range [{m.dmin}, {m.dmax}], pre-processing {p.mode}{thr})",
        expected,
    )


def recipe_warning(sample: str | None, sample_from: str | None, profile: str) -> None:
    """Warn which recipe a run uses when the sample name does not choose one, and how to choose.

    ``sample_from`` names where the sample name was read (``shot.cxi:/entry_1/sample_1/name``);
    None when there is no sample name to read (``xstereo stereo`` without ``--recipe``).
    """
    if sample_from is None:
        where, found = "--recipe", "no --recipe"
    else:
        where, found = (
            sample_from,
            (f"the sample name {sample!r}, which names no recipe" if sample else "no sample name"),
        )
    warn(
        where,
        f"{found}: the plain '{profile}' profile is used (the amplitude cross's defaults without its "
        "recipe: block matching, outlier t = 0.1, no rectification)",
        f"--recipe {{{','.join(RECIPE_NAMES)}}} to choose the paper's processing for this kind of sample "
        f"or 'natural' for camera stereo pairs (or a shot whose sample name is one of {list(SAMPLE_NAMES)})",
        stacklevel=4,
    )


def warning_printer(command: str):
    """A ``warnings.showwarning`` that prints one ``xstereo CMD: warning: ...`` line on stderr.

    :class:`~xstereo_gpu.errors.InputWarning` messages are printed as they are; other warnings
    also say their category and where they were raised.
    """

    def show(message, category, filename, lineno, file=None, line=None):
        origin = (
            "" if issubclass(category, InputWarning) else f" ({category.__name__} at {filename}:{lineno})"
        )
        print(f"xstereo {command}: warning: {message}{origin}", file=sys.stderr)

    return show


def run_with_warnings(func, args, command: str):
    """``func(args)`` with warnings printed by :func:`warning_printer`.

    Only how warnings are shown changes: the filters in force (``-W``, ``PYTHONWARNINGS``, pytest's
    ``filterwarnings``) still decide which are shown, ignored or raised.
    """
    import warnings

    with warnings.catch_warnings():
        warnings.showwarning = warning_printer(command)
        try:
            return func(args)
        except InputWarning as w:  # warnings turned into errors by the filters
            raise InputError(
                w.where, w.found, f"{w.plausible} (a warning, turned into an error by the warning filters)"
            ) from None
