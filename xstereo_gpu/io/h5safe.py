"""Safe access to the objects of an input HDF5 file: links are walked here, not by HDF5.

An HDF5 file can point outside itself in three ways: **external links** (a link to an object in
another file), **external raw storage** (a dataset whose bytes live in other files, any files) and
**virtual datasets** (a dataset assembled from datasets of other files). Followed blindly, a shot's
"intensities" could be the bytes of ``/etc/passwd``. :class:`H5Access` therefore resolves every
object an input reader asks for link by link, with a bound on the number of links (a soft-link loop
ends in an :class:`~xstereo_gpu.errors.InputError`, not in HDF5's "too many links"), and refuses any
target outside the input file's directory (after resolving symlinks and ``..``) unless the caller
opted in (``allow_external_data=True``; CLI ``--allow-external-data``).

How the targets are resolved (the same way the data are then read):

* external links: opened here, relative to the directory of the file that holds the link;
* external raw storage: relative to the file's directory (datasets are opened with the HDF5
  ``efile_prefix`` ``${ORIGIN}``), or to ``HDF5_EXTFILE_PREFIX`` when that is set (HDF5 prefers it);
* virtual datasets: source ``"."`` is the file itself; other sources relative to the file's
  directory (``virtual_prefix`` ``${ORIGIN}``), or to ``HDF5_VDS_PREFIX`` when set. Sources are
  checked recursively (a source may itself be external or virtual) and must exist (HDF5 would fill
  a missing source with zeros without a word).
"""

from __future__ import annotations

import contextlib
import os
import posixpath
from typing import Any

from ..errors import InputError

__all__ = ["H5Access", "MAX_LINK_HOPS", "ALLOW_HINT"]

#: Most soft or external links followed to reach one object (HDF5's own limit is 16 soft links).
MAX_LINK_HOPS = 32
#: Most nested levels of virtual-dataset sources and external files checked.
MAX_DEPTH = 8
#: How to opt in, quoted by the messages.
ALLOW_HINT = "--allow-external-data (Python: allow_external_data=True)"


def _inside(path: str, base: str) -> bool:
    real = os.path.realpath(path)
    return os.path.commonpath([real, base]) == base


def _prefix_dirs(env: str, file_dir: str) -> list[str]:
    """Directories HDF5 resolves relative external names against: ``env`` when set, else the file's."""
    value = os.environ.get(env)
    if not value:
        return [file_dir]
    return [p.replace("${ORIGIN}", file_dir) or "." for p in value.split(os.pathsep)]


class H5Access:
    """Resolve objects of one input HDF5 file (and of the files it points to) safely.

    Parameters
    ----------
    path : str or path-like
        The input file, as the user named it (messages quote it).
    allow_external : bool
        Follow external links, external raw storage and virtual-dataset sources anywhere. By
        default they must lie inside the input file's directory.
    """

    def __init__(self, path: str | os.PathLike, *, allow_external: bool = False):
        self.src = str(path)
        self.base = os.path.realpath(os.path.dirname(os.path.abspath(os.fspath(path))))
        self.allow = bool(allow_external)
        self._stack = contextlib.ExitStack()
        self._files: dict[str, Any] = {}
        self._checked: set[tuple[str, str]] = set()

    def close(self) -> None:
        """Close the external files opened while resolving links."""
        self._stack.close()
        self._files.clear()

    # -- location policy -------------------------------------------------------------------------
    def _allow_location(self, where: str, what: str, path: str) -> None:
        if self.allow or _inside(path, self.base):
            return
        real = os.path.realpath(path)
        shown = what if real in what else f"{what} (= {real})"
        raise InputError(
            where,
            shown,
            f"data inside {self.base} (the input file's directory), or {ALLOW_HINT} to follow it",
        )

    def _open(self, path: str, where: str, what: str):
        """An external HDF5 file, opened once per session, read-only."""
        import h5py

        real = os.path.realpath(path)
        if real in self._files:
            return self._files[real]
        if not os.path.exists(real):
            raise InputError(
                where,
                f"{what} that cannot be resolved (no such file {path})",
                "a link to an existing dataset (is the linked file next to this one?)",
            )
        if not os.path.isfile(real):
            raise InputError(where, f"{what}, which is not a regular file ({real})", "a link to an HDF5 file")
        try:
            f = self._stack.enter_context(h5py.File(real, "r"))
        except OSError as exc:
            raise InputError(
                where, f"{what}: an unreadable HDF5 file ({exc})", "a link to a readable HDF5 file"
            ) from None
        self._files[real] = f
        return f

    def register(self, f) -> None:
        """Record the already-open input file, so that links back to it reuse it."""
        self._files.setdefault(os.path.realpath(f.filename), f)

    # -- link walking ----------------------------------------------------------------------------
    def node(self, f, name: str, where: str | None = None) -> Any:
        """The group or dataset at ``name`` in file ``f``, or None when no such link exists.

        Raises
        ------
        InputError
            A dangling link, a loop of links, a user-defined link, or a target outside the input
            file's directory (unless allowed).
        """
        where = where or f"{self.src}:/{name.lstrip('/')}"
        return self._walk(f, name, where, depth=0)

    def _walk(self, f, name: str, where: str, *, depth: int) -> Any:
        import h5py

        # each part carries the index of the link whose target it belongs to (None: the name asked for)
        parts: list[tuple[str, int | None]] = [(p, None) for p in _split(name)]
        cur_file, group = f, f["/"]
        trail: list[str] = []
        while parts:
            part, via = parts.pop(0)
            link = None
            if isinstance(group, h5py.Group):
                try:
                    link = group.get(part, getlink=True)
                except (KeyError, ValueError, TypeError, RuntimeError):
                    link = None
            if link is None:
                return self._missing(where, trail, via)
            if isinstance(link, h5py.HardLink):
                if not parts:
                    return self._checked_object(cur_file, group, part, where, depth)
                group = group.get(part)
                continue
            here = posixpath.join(group.name, part)
            if len(trail) >= MAX_LINK_HOPS:
                raise InputError(
                    where,
                    f"a loop of links ({'; '.join(list(dict.fromkeys(trail))[:4])}; ...)",
                    "links that end at a dataset or group (no soft-link loop)",
                )
            if isinstance(link, h5py.SoftLink):
                trail.append(f"soft link {here} -> {link.path}")
                if link.path.startswith("/"):
                    group = cur_file["/"]
            elif isinstance(link, h5py.ExternalLink):
                what = f"an HDF5 external link to {link.filename}:{link.path}"
                trail.append(f"external link {here} -> {link.filename}:{link.path}")
                target = link.filename
                if not os.path.isabs(target):
                    target = os.path.join(os.path.dirname(os.path.abspath(cur_file.filename)), target)
                self._allow_location(where, what, target)
                cur_file = self._open(target, where, what)
                group = cur_file["/"]
            else:
                raise InputError(where, f"a user-defined HDF5 link at {here}", "hard, soft or external links")
            parts = [(p, len(trail) - 1) for p in _split(link.path)] + parts
        return group

    @staticmethod
    def _missing(where: str, trail: list[str], via: int | None) -> None:
        """None for a name that does not exist; an error for a link whose target does not."""
        if via is None:
            return None
        rest = f" (reached via {'; '.join(trail[:via])})" if via > 0 else ""
        raise InputError(
            where,
            f"{trail[via]} that cannot be resolved{rest}",
            "a link to an existing dataset (is the linked file next to this one?)",
        )

    # -- storage of datasets ---------------------------------------------------------------------
    def _checked_object(self, f, group, part: str, where: str, depth: int) -> Any:
        import h5py

        if group.get(part, getclass=True) is not h5py.Dataset:
            return group.get(part)
        ds = _open_dataset(group, part)
        self._check_storage(f, ds, where, depth)
        return ds

    def _check_storage(self, f, ds, where: str, depth: int) -> None:
        key = (os.path.realpath(f.filename), ds.name)
        if key in self._checked:
            return
        self._checked.add(key)
        file_dir = os.path.dirname(os.path.abspath(f.filename))
        for entry in ds.external or ():
            raw = os.fsdecode(entry[0])
            for path in _candidates(raw, _prefix_dirs("HDF5_EXTFILE_PREFIX", file_dir)):
                self._allow_location(where, f"external raw storage in {raw}", path)
        if not ds.is_virtual:
            return
        if depth >= MAX_DEPTH:
            raise InputError(
                where,
                f"virtual-dataset sources nested more than {MAX_DEPTH} deep",
                "a virtual dataset with direct sources",
            )
        for vs in ds.virtual_sources():
            name = os.fsdecode(vs.file_name)
            dset = os.fsdecode(vs.dset_name)
            if name == ".":
                self._walk(f, dset, where, depth=depth + 1)
                continue
            stem = os.path.splitext(os.path.basename(f.filename))[0]
            name_b = name.replace("%b", stem).replace("%%", "%")
            if "%" in name_b:
                raise InputError(
                    where,
                    f"a virtual dataset with a source file pattern {name!r}",
                    "virtual sources in named files (printf-style patterns are not followed)",
                )
            what = f"a virtual dataset with sources in {name}"
            paths = _candidates(name_b, _prefix_dirs("HDF5_VDS_PREFIX", file_dir))
            for path in paths:
                self._allow_location(where, what, path)
            existing = [p for p in paths if os.path.isfile(p)]
            if not existing:
                raise InputError(
                    where,
                    f"{what}, a file that does not exist ({paths[0]})",
                    "a virtual dataset whose source files exist (HDF5 would read zeros)",
                )
            src_file = self._open(existing[0], where, what)
            self._walk(src_file, dset, where, depth=depth + 1)


def _split(path: str) -> list[str]:
    return [p for p in path.split("/") if p and p != "."]


def _candidates(name: str, dirs: list[str]) -> list[str]:
    if os.path.isabs(name):
        return [name]
    return [os.path.join(d, name) for d in dirs]


def _open_dataset(group, part: str):
    """The dataset opened with external-raw and virtual prefixes relative to its file's directory."""
    import h5py

    try:
        dapl = h5py.h5p.create(h5py.h5p.DATASET_ACCESS)
        dapl.set_efile_prefix(b"${ORIGIN}")
        dapl.set_virtual_prefix(b"${ORIGIN}")
        return h5py.Dataset(h5py.h5d.open(group.id, part.encode("utf-8"), dapl))
    except (AttributeError, OSError, ValueError, KeyError):  # older HDF5, or already open: h5py's own object
        return group.get(part)
