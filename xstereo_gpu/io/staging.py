"""Staged writes: files and output directories that appear complete or not at all.

Every output is written under a temporary name next to its target and renamed onto the target only
when it is complete (DESIGN.md section 10). This module also keeps what is already on disk safe:

- a final rename never replaces what appeared at the target while the work ran (another run writing
  to the same place); the new results are then kept under a ``.kept-`` name and the error says where;
- an output directory that is, or contains, one of the run's inputs (or the current directory) is
  refused before any work;
- a target's writability is probed before any work (a read-only or full file system is found
  before the compute, not after it);
- temporary names carry the host and process id of their writer, so that the next write to the same
  target removes those left by a killed process (SIGKILL, power loss) and never one still in use.

Temporary names: ``<name>.tmp-<host>-<pid>-<hex>[<suffix>]`` (files keep their suffix so that writers
which append an extension, such as ``numpy.save``, write exactly there); a replaced directory is moved
aside as ``<name>.old-<host>-<pid>-<hex>`` for the instant of the swap.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import functools
import os
import pathlib
import re
import secrets
import shutil
import socket
from collections.abc import Iterable, Iterator

from ..errors import InputError, check

__all__ = ["atomic_file", "output_directory", "check_output_path", "check_file_target", "remove_stale"]

_TMP_TAG = ".tmp-"
_OLD_TAG = ".old-"
_KEPT_TAG = ".kept-"
#: Bytes written (and removed) in a new output directory before any work, to find a full disk early.
PROBE_BYTES = 1 << 20

_RENAME_NOREPLACE = 1
_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9]", "", socket.gethostname())[:32] or "host"


def _stamp() -> str:
    """``<host>-<pid>-<hex>``: who writes this temporary, unique per call."""
    return f"{_host()}-{os.getpid()}-{secrets.token_hex(4)}"


def _stale_pattern(name: str) -> re.Pattern:
    return re.compile(
        rf"^{re.escape(name)}(?P<tag>\.tmp-|\.old-)(?P<host>[A-Za-z0-9]+)-(?P<pid>\d+)-[0-9a-f]{{8}}"
    )


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def remove_stale(path: str | os.PathLike) -> list[pathlib.Path]:
    """Remove temporaries of ``path`` left by processes of this host that no longer run.

    Parameters
    ----------
    path : str or path-like
        A target file or output directory. Its siblings ``<name>.tmp-*`` and ``<name>.old-*`` whose
        writer (host and process id in the name) is a dead process of this host are removed; those of
        live processes, and of other hosts (a shared file system), are left alone. A ``.old-`` directory
        whose target is missing (a kill between the two renames of a swap) is renamed back onto the
        target instead of being removed.

    Returns
    -------
    list of pathlib.Path
        What was removed or restored.
    """
    path = pathlib.Path(os.path.abspath(path))
    pattern = _stale_pattern(path.name)
    host = _host()
    done = []
    try:
        siblings = sorted(path.parent.iterdir())
    except OSError:
        return done
    for p in siblings:
        m = pattern.match(p.name)
        if m is None or m["host"] != host or _alive(int(m["pid"])):
            continue
        if m["tag"] == _OLD_TAG and not os.path.lexists(path):
            with contextlib.suppress(OSError):
                os.rename(p, path)
                done.append(p)
            continue
        with contextlib.suppress(OSError):
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p)
            else:
                p.unlink()
            done.append(p)
    return done


@functools.cache
def _renameat2():
    """libc's ``renameat2`` (Linux, glibc 2.28+), or None."""
    try:
        fn = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    fn.restype = ctypes.c_int
    return fn


def _rename2(src: pathlib.Path, dst: pathlib.Path, flags: int) -> bool:
    """``renameat2(src, dst, flags)``; False where the call or the flag is not supported; OSError on "
    "failure."""
    fn = _renameat2()
    if fn is None:
        return False
    if fn(_AT_FDCWD, os.fsencode(src), _AT_FDCWD, os.fsencode(dst), flags) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP, errno.EOPNOTSUPP):
        return False
    raise OSError(err, os.strerror(err), str(dst))


def _rename_noreplace(src: pathlib.Path, dst: pathlib.Path) -> None:
    """Rename ``src`` onto ``dst``; ``FileExistsError`` if ``dst`` exists (nothing is replaced)."""
    if _rename2(src, dst, _RENAME_NOREPLACE):
        return
    if os.path.lexists(dst):
        raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), str(dst))
    if src.is_dir():
        os.rename(src, dst)  # fails on a non-empty directory, and on a file, that appeared since
    else:
        os.link(src, dst)  # fails if dst appeared since
        os.unlink(src)


def _keep(tmp: pathlib.Path, path: pathlib.Path) -> pathlib.Path:
    """Move a finished temporary to a visible ``<name>.kept-<stamp><suffix>`` name beside ``path``."""
    suffix = "" if tmp.is_dir() else path.suffix
    kept = path.parent / f"{path.name}{_KEPT_TAG}{_stamp()}{suffix}"
    os.rename(tmp, kept)
    return kept


def _conflict(path: pathlib.Path, tmp: pathlib.Path, what: str) -> InputError:
    kept = _keep(tmp, path)
    return InputError(
        str(path),
        f"{what} while this run was working (another run writing to the same place?)",
        f"a target that no other run writes to; nothing was replaced, and this run's results "
        f"are kept in {kept}",
    )


def _fsync(path: pathlib.Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - unreadable temp file: the rename still happens
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover - file systems without fsync
        pass
    finally:
        os.close(fd)


def _unwritable(path: pathlib.Path, exc: OSError) -> InputError:
    reason = exc.strerror or str(exc)
    return InputError(
        str(path),
        f"a place that cannot be written ({reason})",
        "a writable directory with free space for the outputs",
    )


def _probe(folder: pathlib.Path, nbytes: int) -> None:
    """Write and remove ``nbytes`` in ``folder``: a read-only or full file system raises OSError here."""
    probe = folder / ".xstereo-write-probe"
    try:
        with open(probe, "wb") as fh:
            fh.write(b"\0" * nbytes)
            fh.flush()
            os.fsync(fh.fileno())
    finally:
        with contextlib.suppress(FileNotFoundError):
            probe.unlink()


def _inside(p: pathlib.Path, folder: pathlib.Path) -> bool:
    return p == folder or folder in p.parents


def check_output_path(
    path: str | os.PathLike, *, inputs: Iterable[str | os.PathLike] = (), directory: bool = True
) -> pathlib.Path:
    """Refuse an output that is, or contains, an input or the current directory.

    Parameters
    ----------
    path : str or path-like
        The output directory (``directory=True``) or file.
    inputs : iterable of path-like
        Files the run reads. An output directory is replaced as a whole, so it must not contain any of
        them (nor be one); an output file must not be one of them.
    directory : bool
        Whether ``path`` is an output directory.

    Returns
    -------
    pathlib.Path
        ``path`` made absolute.

    Raises
    ------
    InputError
        Naming the output, the input it holds and what is expected.
    """
    path = pathlib.Path(os.path.abspath(path))
    real = pathlib.Path(os.path.realpath(path))
    if directory:
        cwd = pathlib.Path(os.getcwd())
        check(
            not _inside(cwd, real) and not _inside(cwd, path),
            str(path),
            "the current directory (or one that contains it), which a finished run would replace",
            "a new directory for the outputs, e.g. -o run1",
        )
    for inp in inputs:
        if inp is None:
            continue
        a = pathlib.Path(os.path.abspath(inp))
        r = pathlib.Path(os.path.realpath(inp))
        hit = (_inside(a, path) or _inside(r, real)) if directory else (a == path or r == real)
        check(
            not hit,
            str(path),
            f"the input {inp} " + ("inside it" if directory else "itself"),
            "an output "
            + (
                "directory that holds none of the inputs (a finished run replaces it whole)"
                if directory
                else "file other than the input"
            ),
        )
    return path


def _file_target(path: pathlib.Path, replace: bool) -> pathlib.Path:
    """Check a file target and remove its stale temporaries; returns its directory."""
    parent = path.parent if str(path.parent) else pathlib.Path(".")
    check(
        parent.is_dir(),
        str(path),
        f"directory {str(parent)!r} does not exist",
        "an existing directory to write into",
    )
    check(not path.is_dir(), str(path), "an existing directory", "a file name")
    check(
        replace or not os.path.lexists(path),
        str(path),
        "an existing file",
        "a new path (or pass --overwrite)",
    )
    remove_stale(path)
    return parent


def check_file_target(
    path: str | os.PathLike, *, replace: bool = False, probe_bytes: int = PROBE_BYTES
) -> None:
    """Before the work that makes it: refuse a file target that :func:`atomic_file` would refuse, or
    whose directory cannot take ``probe_bytes`` (read-only or full file system)."""
    path = pathlib.Path(path)
    parent = _file_target(path, replace)
    probe = parent / f"{path.name}{_TMP_TAG}{_stamp()}"
    try:
        probe.mkdir()  # a temporary directory like any other, so that a kill leaves nothing that stays
        _probe(probe, probe_bytes)
    except OSError as exc:
        raise _unwritable(path, exc) from None
    finally:
        shutil.rmtree(probe, ignore_errors=True)


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike, *, replace: bool = True) -> Iterator[pathlib.Path]:
    """Write a file under a temporary name and rename it onto ``path`` when the body succeeds.

    Parameters
    ----------
    path : str or path-like
        Final file name. Its directory must exist.
    replace : bool
        Replace an existing ``path``. With ``False`` the rename never replaces a file at ``path``,
        also one that appeared while the body ran: the new file is then kept beside it under a
        ``.kept-`` name and :class:`InputError` says where.

    Yields
    ------
    tmp : pathlib.Path
        A path that does not exist yet, in the same directory as ``path`` (so the rename is atomic),
        named ``<name>.tmp-<host>-<pid>-<hex><suffix>``. The body must create it.

    Notes
    -----
    On success the temporary file is flushed to disk and renamed onto ``path``. On any exception
    (``KeyboardInterrupt`` and the CLI's SIGTERM included) it is removed and the exception propagates;
    ``path`` is left as it was. Temporaries of ``path`` left by dead processes are removed first.
    """
    path = pathlib.Path(path)
    parent = _file_target(path, replace)
    tmp = parent / f"{path.name}{_TMP_TAG}{_stamp()}{path.suffix}"
    try:
        yield tmp
        if not tmp.exists():
            raise FileNotFoundError(f"atomic_file({str(path)!r}): the body did not write {str(tmp)!r}")
        _fsync(tmp)
        if replace:
            os.replace(tmp, path)
        else:
            try:
                _rename_noreplace(tmp, path)
            except FileExistsError:
                raise _conflict(path, tmp, "a file that appeared") from None
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


@contextlib.contextmanager
def output_directory(
    path: str | os.PathLike,
    *,
    overwrite: bool = False,
    inputs: Iterable[str | os.PathLike] = (),
    probe_bytes: int = PROBE_BYTES,
) -> Iterator[pathlib.Path]:
    """Fill a fresh temporary directory and move it onto ``path`` when the body succeeds.

    Enter it *before* the work: the target is checked, claimed and probed for writability at entry,
    so that a bad output fails before the compute rather than after it.

    Parameters
    ----------
    path : str or path-like
        The run's output directory. Missing parent directories are created.
    overwrite : bool
        Replace an existing non-empty directory ``path`` (the ``--overwrite`` option). An existing
        *file* at ``path`` is never replaced.
    inputs : iterable of path-like
        Files the run reads: ``path`` must not be or contain any of them (:func:`check_output_path`).
    probe_bytes : int
        Bytes written and removed in the temporary directory at entry (a full disk fails here).

    Yields
    ------
    tmp : pathlib.Path
        An empty directory next to ``path``, named ``<name>.tmp-<host>-<pid>-<hex>``.

    Raises
    ------
    InputError
        At entry: ``path`` is a file, a non-empty directory without ``overwrite``, the current
        directory or one holding an input, or not writable. At exit: something appeared at ``path``
        (or replaced the directory that was there) while the body ran; nothing is replaced then, and
        the results are kept beside ``path`` under a ``.kept-`` name that the message gives.

    Notes
    -----
    On success the temporary directory is renamed onto ``path`` (atomically exchanged with the old
    directory where the file system allows, then the old one is removed). On any exception the
    temporary directory is removed and ``path`` is left untouched.
    """
    path = check_output_path(path, inputs=inputs)
    before = None
    if os.path.lexists(path):
        check(
            path.is_dir(),
            str(path),
            "an existing file",
            "a directory name for the outputs (choose another path)",
        )
        check(
            overwrite or not any(path.iterdir()),
            str(path),
            "a non-empty directory",
            "an empty or new directory (pass --overwrite to replace it)",
        )
        st = os.stat(path)
        before = (st.st_dev, st.st_ino)
    parent = path.parent
    remove_stale(path)
    tmp = parent / f"{path.name}{_TMP_TAG}{_stamp()}"
    try:
        parent.mkdir(parents=True, exist_ok=True)
        tmp.mkdir(mode=0o777)
    except OSError as exc:
        raise _unwritable(path, exc) from None
    try:
        try:
            _probe(tmp, probe_bytes)
        except OSError as exc:
            raise _unwritable(path, exc) from None
        yield tmp
        _finish(tmp, path, before, overwrite)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _same(path: pathlib.Path, before) -> bool:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return False
    return (st.st_dev, st.st_ino) == before


def _finish(tmp: pathlib.Path, path: pathlib.Path, before, overwrite: bool) -> None:
    """Move the finished ``tmp`` onto ``path`` without replacing anything that was not there at entry."""
    if before is None or not os.path.lexists(path):
        try:
            _rename_noreplace(tmp, path)
        except (FileExistsError, OSError) as exc:
            if isinstance(exc, FileExistsError) or exc.errno in (
                errno.ENOTEMPTY,
                errno.EEXIST,
                errno.ENOTDIR,
            ):
                raise _conflict(path, tmp, "an output that appeared") from None
            raise
        return
    if not _same(path, before):
        raise _conflict(path, tmp, "a different directory that replaced the one found at the start")
    if not overwrite:  # it was empty at entry: it must still be, and then it simply goes
        try:
            os.rmdir(path)
        except OSError:
            raise _conflict(path, tmp, "files that appeared in the empty directory") from None
        _finish(tmp, path, None, overwrite)
        return
    if _rename2(tmp, path, _RENAME_EXCHANGE):  # atomic swap: path never missing
        shutil.rmtree(tmp, ignore_errors=True)
        return
    old = path.parent / f"{path.name}{_OLD_TAG}{_stamp()}"
    os.rename(path, old)
    try:
        _rename_noreplace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            _rename_noreplace(old, path)
        raise
    shutil.rmtree(old, ignore_errors=True)
