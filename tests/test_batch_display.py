"""``xstereo batch``'s progress and final table (xstereo_gpu/batch/display.py, report.py; issue 9):
plain lines every 10 % and every so many seconds off a terminal, quiet mode, the live rich bar, the
tables of a report."""

from __future__ import annotations

import io
import pathlib
import re

from xstereo_gpu.batch.display import BatchProgress, print_report, progress_line
from xstereo_gpu.batch.record import ShotRecord
from xstereo_gpu.batch.report import RunReport


class _Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def _records(n: int, failed=(7,)):
    for i in range(n):
        status = "failed" if i in failed else "ok" if i % 10 == 0 else "blank"
        yield ShotRecord(i, f"run.cxi#{i}", status, "truncated file" if status == "failed" else "")


def test_plain_progress_every_ten_percent_and_every_so_often():
    stream, clock = io.StringIO(), _Clock()
    with BatchProgress(100, stream=stream, clock=clock, every_s=30.0) as bar:
        for rec in _records(100):
            clock.t += 0.1 if rec.index != 54 else 60.0  # one slow shot: a line on time
            bar.update(rec)
    lines = stream.getvalue().splitlines()
    progress = [s for s in lines if s.startswith("[batch] ")]
    assert len(progress) == 11 and progress[-1].startswith("[batch] 100/100 (100 %)")
    assert any(s.startswith("[batch] 55/100") for s in progress)  # the 60 s shot
    assert progress[-1].endswith("10 ok, 89 blank, 1 failed")
    assert lines.count("xstereo batch: shot 7 (run.cxi#7) failed: truncated file") == 1
    assert bar.counts == {"ok": 10, "blank": 89, "failed": 1} and not bar.live


def test_quiet_progress_reports_only_failures():
    stream = io.StringIO()
    with BatchProgress(20, stream=stream, enabled=False) as bar:
        for rec in _records(20, failed=(3, 12)):
            bar.update(rec)
    assert stream.getvalue().splitlines() == [
        "xstereo batch: shot 3 (run.cxi#3) failed: truncated file",
        "xstereo batch: shot 12 (run.cxi#12) failed: truncated file",
    ]


def test_live_bar_shows_rate_counts_and_failures():
    stream = io.StringIO()
    with BatchProgress(30, stream=stream, live=True) as bar:
        for rec in _records(30):
            bar.update(rec)
    text = stream.getvalue()
    assert bar.live and "30/30" in text and "shots/s" in text and "3 ok" in text and "26 blank" in text
    assert "xstereo batch: shot 7 (run.cxi#7) failed: truncated file" in text


def test_progress_line_before_any_rate():
    assert (
        progress_line(0, 5, 0.0, {})
        == "[batch] 0/5 (  0 %) 0.0 s, 0.00 shots/s, ETA ?; 0 ok, 0 blank, 0 failed"
    )


def test_report_tables():
    report = RunReport(
        run={"ok": 2, "blank": 40, "failed": 1},
        stored={"ok": 3, "blank": 40, "failed": 1},
        selected=44,
        wall_s=8.6,
        stages=(("read", 0.012, 0.02, 3), ("phase", 1.5, 2.25, 3), ("total", 3.2, 4.0, 3)),
        quality=(("depth error vs ground truth, median per shot [nm]", 91.2, 3),),
        store=pathlib.Path("store"),
    )
    out = io.StringIO()
    print_report(report, file=out)
    text = out.getvalue()
    assert text.startswith("43 shots in 8.6 s (5.00 shots/s): 2 ok, 40 blank, 1 failed; the store holds 44")
    assert re.search(r"\| total\s+\|\s+43 \|\s+44 of 44 \|", text)  # ASCII boxes off a terminal
    assert "seconds per stage (3 ok shots)" in text and re.search(
        r"\| phase\s+\|\s+1\.50 \|\s+2\.25 \|", text
    )
    assert re.search(r"median per shot \[nm\]\s+\|\s+91\.20 \|\s+3 \|", text)
    assert f"run store: {pathlib.Path('store').resolve()}/run.h5" in text
