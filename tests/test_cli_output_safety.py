"""Nothing is lost: outputs never clobber inputs or other runs, and killed runs leave nothing that stays.

Fault injection through the real ``xstereo`` command in subprocesses: SIGTERM and SIGKILL during the
compute and during the export, two runs into one output directory, a read-only and a full output file
system (small tmpfs mounts, where this machine allows mounting; skipped otherwise). The staging these
rely on (:mod:`xstereo_gpu.io.staging`) is unit-tested in test_staging.py.
"""

from __future__ import annotations

import contextlib
import pathlib
import shutil
import signal
import subprocess
import sys
import textwrap
import time

import pytest
from _helpers import TINY, temporaries

import xstereo_gpu
from xstereo_gpu.cli import main


def _xstereo(*argv, env_code: str = "", **kw) -> subprocess.Popen:
    """Start ``xstereo ARGV`` in a subprocess, after running ``env_code`` (fault injection) in it."""
    code = (
        "import sys\n"
        + textwrap.dedent(env_code)
        + "\nfrom xstereo_gpu.cli import main\nsys.exit(main(sys.argv[1:]))"
    )
    return subprocess.Popen(
        [sys.executable, "-c", code, *map(str, argv)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kw,
    )


def _wait_for(predicate, timeout=60.0) -> None:
    t0 = time.monotonic()
    while not predicate():
        assert time.monotonic() - t0 < timeout, "timed out waiting"
        time.sleep(0.02)


# -- the current directory -------------------------------------------------------------------------


@pytest.mark.parametrize("target", [".", ".."])
def test_cli_refuses_the_current_directory(target, shot_file, tmp_path, monkeypatch, capsys):
    """`-o . --overwrite` (or a parent of it) would replace the directory the user works in."""
    here = tmp_path / "work" / "here"
    here.mkdir(parents=True)
    (here / "notes.txt").write_text("mine")
    monkeypatch.chdir(here)
    rc = main(["run", str(shot_file), "-o", target, "--overwrite", *TINY])
    err = capsys.readouterr().err
    assert rc == 2 and "the current directory (or one that contains it)" in err and "Traceback" not in err
    assert (here / "notes.txt").read_text() == "mine" and temporaries(tmp_path) == []


# -- fault injection through the command --------------------------------------------------------------

#: A run long enough to be killed in its compute (the phasing of 2 x 4 runs, 4000 iterations).
LONG = ["--runs", "4", "--iterations", "4000", "--no-figures"]


def test_a_terminated_batch_keeps_the_shots_it_finished(shot_file, tmp_path):
    """SIGTERM during the second shot of ``xstereo batch``: the first shot's chunk stays, run.h5 is
    written and the message says so."""
    files = [shutil.copyfile(shot_file, tmp_path / f"shot-{k}.cxi") for k in range(3)]
    store = tmp_path / "store"
    argv = ("batch", *files, "-o", store, "--workers", "0", "--chunk-size", "1", "--shots-per-launch", "1")
    proc = _xstereo(*argv, "--runs", "2", "--iterations", "400")
    _wait_for(lambda: list((store / "chunks").glob("chunk-*.h5")) or proc.poll() is not None, timeout=180)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert "the shots finished are kept in the run store" in err and "Traceback" not in err
    from xstereo_gpu.batch import RunStore

    kept = RunStore(store).statuses()
    assert kept and set(kept.values()) == {"ok"} and len(kept) < 3 and (store / "run.h5").is_file()


@pytest.mark.parametrize("sig, rc", [(signal.SIGTERM, 128 + signal.SIGTERM), (signal.SIGINT, 130)])
def test_signal_during_compute_leaves_nothing(sig, rc, shot_file, tmp_path):
    out = tmp_path / "out"
    proc = _xstereo("run", shot_file, "-o", out, *LONG)
    _wait_for(lambda: temporaries(tmp_path) or proc.poll() is not None)
    time.sleep(0.5)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == rc, err
    assert "no partial outputs were kept" in err and "Traceback" not in err
    assert not out.exists() and temporaries(tmp_path) == []


#: Fault injection in the export: the cloud writer (after views.cxi and the TIFFs) signals the process.
KILL_IN_EXPORT = """
import os, signal, xstereo_gpu.outputs as outputs
def write_ply(*a, **k):
    os.kill(os.getpid(), signal.{sig})
    raise SystemExit("the signal did not stop the process")
outputs.write_ply = write_ply  # the name the run-file writer calls
"""


def test_sigterm_during_export_leaves_nothing(shot_file, tmp_path):
    out = tmp_path / "out"
    proc = _xstereo("run", shot_file, "-o", out, *TINY, env_code=KILL_IN_EXPORT.format(sig="SIGTERM"))
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert not out.exists() and temporaries(tmp_path) == []


def test_sigkill_during_export_is_cleaned_by_the_next_run(shot_file, tmp_path):
    out = tmp_path / "out"
    proc = _xstereo("run", shot_file, "-o", out, *TINY, env_code=KILL_IN_EXPORT.format(sig="SIGKILL"))
    proc.communicate(timeout=120)
    assert proc.returncode == -signal.SIGKILL
    left = temporaries(tmp_path)
    assert len(left) == 1 and not out.exists()  # the staged directory, never the target
    assert (pathlib.Path(left[0]) / "views.cxi").is_file()
    assert main(["run", str(shot_file), "-o", str(out), *TINY]) == 0
    assert (out / "cloud.ply").is_file() and temporaries(tmp_path) == []


def test_sigkill_of_simulate_is_cleaned_by_the_next_one(tmp_path):
    out = tmp_path / "shot.cxi"
    kill_in_write = """
    import os, signal, h5py
    class File(h5py.File):
        def close(self):
            os.kill(os.getpid(), signal.SIGKILL)
    h5py.File = File
    """
    argv = ["simulate", "-o", out, "--no-hdr", "-q"]
    proc = _xstereo(*argv, env_code=kill_in_write)
    proc.communicate(timeout=120)
    assert proc.returncode == -signal.SIGKILL
    assert not out.exists() and len(temporaries(tmp_path)) == 1
    assert main([str(a) for a in argv]) == 0
    assert out.is_file() and temporaries(tmp_path) == []


def test_two_runs_into_one_new_directory(shot_file, tmp_path):
    """Both start on a new directory: one wins, the other is refused with its results kept beside it."""
    out = tmp_path / "out"
    procs = [_xstereo("run", shot_file, "-o", out, *TINY) for _ in range(2)]
    results = [(p.wait(timeout=180), p.stderr.read()) for p in procs]
    for p in procs:
        p.stdout.close()
        p.stderr.close()
    codes = sorted(rc for rc, _ in results)
    assert codes == [0, 2], results
    err = next(e for rc, e in results if rc == 2)
    assert str(out) in err and ("non-empty directory" in err or "appeared" in err)
    assert {"views.cxi", "cloud.ply", "summary.json"} <= {p.name for p in out.iterdir()}
    assert temporaries(tmp_path) == []


def test_two_simulates_to_one_path(tmp_path):
    out = tmp_path / "shot.cxi"
    argv = ["simulate", "-o", out, "--no-hdr", "-q"]
    procs = [_xstereo(*argv) for _ in range(2)]
    codes = sorted(p.wait(timeout=180) for p in procs)
    for p in procs:
        p.stdout.close()
        p.stderr.close()
    assert codes == [0, 2]
    assert xstereo_gpu.read_shot(out).frame.shape == (512, 512)
    assert temporaries(tmp_path) == []


# -- read-only and full output file systems ---------------------------------------------------------


@contextlib.contextmanager
def _tmpfs(folder: pathlib.Path, *options: str):
    """Mount a tmpfs at ``folder`` (skip where this machine does not allow it)."""
    folder.mkdir()
    opts = ",".join(("size=" + options[0], *options[1:]))
    try:
        r = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(folder)], capture_output=True, text=True
        )
    except FileNotFoundError:
        pytest.skip("no mount command")
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({r.stderr.strip()})")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def _fails_before_compute(argv, capsys) -> str:
    rc = main([str(a) for a in argv])
    err = capsys.readouterr().err
    assert rc == 2, err
    assert "error: " in err and "Traceback" not in err
    assert "[phase]" not in err and "[simulate]" not in err  # refused before any compute
    return err


def test_read_only_output(shot_file, tmp_path, capsys):
    with _tmpfs(tmp_path / "ro", "1m", "ro") as ro:
        err = _fails_before_compute(
            ["run", shot_file, "-o", ro / "out", "--runs", "2", "--iterations", "10"], capsys
        )
        assert str(ro / "out") in err and "cannot be written" in err and "Read-only" in err
        err = _fails_before_compute(["simulate", "-o", ro / "shot.cxi", "--no-hdr"], capsys)
        assert "cannot be written" in err


def test_full_output_before_compute(shot_file, tmp_path, capsys):
    with _tmpfs(tmp_path / "full", "256k") as full:
        err = _fails_before_compute(
            ["run", shot_file, "-o", full / "out", "--runs", "2", "--iterations", "10"], capsys
        )
        assert "No space left on device" in err
        assert list(full.iterdir()) == []


def test_full_output_during_export(shot_file, tmp_path, capsys):
    """The probe passes but the outputs (about 5 MB) do not fit: exit 2, nothing partial kept."""
    with _tmpfs(tmp_path / "small", "2m") as small:
        rc = main(["run", str(shot_file), "-o", str(small / "out"), *TINY])
        err = capsys.readouterr().err
        assert rc == 2, err
        assert "error: " in err and "Traceback" not in err
        assert str(small / "out") in err and "MB free on the output's file system" in err
        assert list(small.iterdir()) == []
