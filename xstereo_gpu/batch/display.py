"""What ``xstereo batch`` shows: progress while the records arrive, the final table at the end.

* :class:`BatchProgress`: on a terminal, a live `rich <https://rich.readthedocs.io>`_ progress bar on
  stderr (done/total, shots/s, ETA, running counts of ok / blank / failed); elsewhere (CI, logs,
  pipes) a plain :func:`progress_line` every 10 % of the shots and at least every ``every_s``
  seconds, so a run of 100000 shots writes a few dozen lines, not 100000; nothing with ``--quiet``.
  Failed shots are reported on stderr in every mode, one line each.
* :func:`print_report`: the final summary on stdout: counts per status (this run and the store),
  shots/s, median and 90th percentile time per stage of the ok shots, medians of their quality and
  accuracy, the run store's path (:class:`~xstereo_gpu.batch.report.RunReport`). Tables are drawn
  with rich: rounded boxes on a terminal, ASCII boxes elsewhere.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable, Mapping
from typing import TextIO

from rich import box
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TaskProgressColumn,
    TextColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

from .record import STATUSES, ShotRecord
from .report import RunReport

__all__ = [
    "BatchProgress",
    "progress_line",
    "failure_line",
    "summary_line",
    "report_tables",
    "print_report",
]


def progress_line(
    done: int, total: int, elapsed_s: float, counts: Mapping[str, int], label: str = "batch"
) -> str:
    """One plain progress line: ``[batch] 25/50 ( 50 %) 4.1 s, 6.10 shots/s, ETA 4 s; 1 ok, ...``."""
    rate = done / elapsed_s if elapsed_s > 0 else 0.0
    eta = f"ETA {(total - done) / rate:.0f} s" if rate > 0 else "ETA ?"
    pct = 100 * done / max(total, 1)
    return (
        f"[{label}] {done}/{total} ({pct:3.0f} %) {elapsed_s:.1f} s, {rate:.2f} shots/s, {eta}; "
        + ", ".join(f"{counts.get(k, 0)} {k}" for k in STATUSES)
    )


def failure_line(rec: ShotRecord) -> str:
    """``xstereo batch: shot 5 (shots/run-5.cxi) failed: <reason>``."""
    return f"xstereo batch: shot {rec.index} ({rec.label}) failed: {rec.reason}"


class _RateColumn(ProgressColumn):
    """Shots per second of the rich bar."""

    def render(self, task) -> Text:
        speed = task.finished_speed or task.speed
        return Text("- shots/s" if speed is None else f"{speed:.2f} shots/s", style="progress.data.speed")


class BatchProgress:
    """Progress of the shots of a run, fed one record at a time (a context manager).

    Parameters
    ----------
    total : int
        Shots to do.
    stream : text stream, optional
        Where progress and failures go (default ``sys.stderr``, looked up when made).
    enabled : bool
        ``False`` (``--quiet``): no progress; failures are still reported.
    live : bool, optional
        A rich live bar (default: when ``stream`` is a terminal) rather than plain lines.
    every_s : float
        Plain mode: a line at least this often [s] besides every 10 % of the shots.
    clock : callable
        Seconds, monotonic (``time.perf_counter``).
    label : str
        What the lines and the bar are called (``[batch] ...``).

    Attributes
    ----------
    counts : dict of str to int
        Records seen per status.
    """

    def __init__(
        self,
        total: int,
        *,
        stream: TextIO | None = None,
        enabled: bool = True,
        live: bool | None = None,
        every_s: float = 30.0,
        clock: Callable[[], float] = time.perf_counter,
        label: str = "batch",
    ):
        self.total = int(total)
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = bool(enabled)
        self.every_s = float(every_s)
        self.clock = clock
        self.label = label
        self.counts = dict.fromkeys(STATUSES, 0)
        console = Console(file=self.stream, highlight=False)
        self.live = self.enabled and (console.is_terminal if live is None else bool(live))
        self._bar: Progress | None = None
        if self.live:
            self._bar = Progress(
                TextColumn(f"[bold]{label}[/]"),
                BarColumn(),
                MofNCompleteColumn(),
                TaskProgressColumn(),
                _RateColumn(),
                TextColumn("ETA"),
                TimeRemainingColumn(),
                TextColumn(
                    "[green]{task.fields[ok]} ok[/] [yellow]{task.fields[blank]} blank[/] "
                    "[red]{task.fields[failed]} failed[/]"
                ),
                console=console,
                redirect_stdout=False,  # stdout may be a file: only stderr's lines go above the bar
                redirect_stderr=True,  # warnings printed meanwhile appear above the bar
            )
        self._t0 = self._last_t = clock()
        self._last_step = 0

    @property
    def done(self) -> int:
        """Records seen."""
        return sum(self.counts.values())

    def __enter__(self) -> BatchProgress:
        self._t0 = self._last_t = self.clock()
        if self._bar is not None:
            self._bar.start()
            self._task = self._bar.add_task(self.label, total=self.total, **self.counts)
        return self

    def __exit__(self, *exc) -> None:
        if self._bar is not None:
            self._bar.stop()

    def update(self, rec: ShotRecord) -> None:
        """Count ``rec``, report it if it failed, and show the progress."""
        self.counts[rec.status] += 1
        if rec.status == "failed":
            self._say(failure_line(rec))
        if not self.enabled:
            return
        done = self.done
        if self._bar is not None:
            self._bar.update(self._task, completed=done, **self.counts)
            return
        now = self.clock()
        step = 10 * done // max(self.total, 1)
        if done >= self.total or step > self._last_step or now - self._last_t >= self.every_s:
            self._last_step, self._last_t = step, now
            self._say(progress_line(done, self.total, now - self._t0, self.counts, self.label))

    def _say(self, text: str) -> None:
        if self._bar is not None:
            self._bar.console.print(text, markup=False, highlight=False, soft_wrap=True)
        else:
            print(text, file=self.stream, flush=True)


def _fmt(x: float) -> str:
    if not math.isfinite(x):
        return "-"
    a = abs(x)
    if a >= 100:
        return f"{x:.0f}"
    if a >= 1:
        return f"{x:.2f}"
    if a >= 1e-3 or a == 0:
        return f"{x:.3f}"
    return f"{x:.1e}"


def summary_line(report: RunReport) -> str:
    """``50 shots in 9.3 s (5.37 shots/s): 2 ok, ...; the store holds 50 of the 50 selected shots: ...``."""
    return (
        f"{report.done} shots in {report.wall_s:.1f} s ({report.rate:.2f} shots/s): "
        + ", ".join(f"{report.run[k]} {k}" for k in STATUSES)
        + f"; the store holds {sum(report.stored.values())} of the {report.selected} selected shots: "
        + ", ".join(f"{report.stored[k]} {k}" for k in STATUSES)
    )


def _table(title: str, columns: tuple, style) -> Table:
    """A table whose ``title`` (plain text) fits on one line above it; the first column left-aligned."""
    table = Table(title=escape(title), box=style, title_justify="left", min_width=len(title))
    for k, name in enumerate(columns):
        table.add_column(name, justify="left" if k == 0 else "right")
    return table


def report_tables(report: RunReport, *, ascii: bool = False) -> list[Table]:
    """The final tables: shots per status, time per stage of the ok shots, medians of their quality."""
    style = box.ASCII if ascii else box.ROUNDED
    shots = _table("shots", ("status", "this run", "in the store"), style)
    for k in STATUSES:
        shots.add_row(k, str(report.run[k]), str(report.stored[k]))
    shots.add_row("total", str(report.done), f"{sum(report.stored.values())} of {report.selected}")
    tables = [shots]
    if report.stages:
        n = max(s[3] for s in report.stages)
        stages = _table(f"seconds per stage ({n} ok shots)", ("stage", "median", "p90"), style)
        for name, med, p90, _ in report.stages:
            stages.add_row(name, _fmt(med), _fmt(p90))
        tables.append(stages)
    if report.quality:
        quality = _table("medians over the ok shots", ("quantity", "median", "shots"), style)
        for label, med, n in report.quality:
            quality.add_row(escape(label), _fmt(med), str(n))
        tables.append(quality)
    return tables


def print_report(report: RunReport, *, file: TextIO | None = None) -> None:
    """Print the final summary of a run (:func:`summary_line`, :func:`report_tables`, the store's path).

    Parameters
    ----------
    report : RunReport
        :func:`~xstereo_gpu.batch.report.run_report`.
    file : text stream, optional
        Default ``sys.stdout`` (looked up when called); ASCII tables unless it is a terminal.
    """
    console = Console(file=file if file is not None else sys.stdout, highlight=False)
    console.print(summary_line(report), markup=False, soft_wrap=True)
    for table in report_tables(report, ascii=not console.is_terminal):
        console.print(table)
    console.print(
        f"run store: {report.store.resolve()}/run.h5 (summary table, clouds), summary.csv, chunks/",
        markup=False,
        soft_wrap=True,
    )
