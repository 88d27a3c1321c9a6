"""Shared by tests/test_batch_*.py: a small simulated run of shot files (ok, blank and bad shots)."""

from __future__ import annotations

import os
import pathlib
import shutil
from dataclasses import dataclass

import h5py
import numpy as np

from xstereo_gpu import PipelineOptions, SimulationOptions, simulate_shot, write_shot

#: Tiny options: 2 runs of 10 iterations (a shot in about 2 s on a CPU core).
OPTIONS = PipelineOptions.for_sample("cross", "cpu").replace(phasing__runs=2, phasing__iterations=10)
#: The 12-shot run: what each index holds.
OK = (0, 2, 4, 8, 10)
BLANK = (1, 3, 6, 9, 11)  # frame x 1e-4 (1, 9, 11) or a near-empty frame (3, 6)
CORRUPT = 5  # truncated file
NAN = 7  # frame full of NaN
N_SHOTS = 12


def small_shot(seed: int):
    return simulate_shot(
        SimulationOptions(
            binning=8, pattern_size=128, cross_size_um=(3.0, 3.0), arm_width_um=1.0, supersample=1, seed=seed
        )
    )


def _near_empty(frame: np.ndarray, seed: int) -> np.ndarray:
    """A dark frame: a few stray photons (exact zeros would be refused as a constant frame)."""
    return np.random.default_rng(seed).poisson(0.01, frame.shape).astype(np.float32)


def make_run(folder: pathlib.Path) -> list[pathlib.Path]:
    """Write the 12 shot files ``shot-00.cxi`` ... ``shot-11.cxi`` into ``folder``; returns them in order."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(N_SHOTS):
        shot = small_shot(seed=100 + i)
        if i in (1, 9, 11):
            shot.frame = (shot.frame * 1e-4).astype(np.float32)
        elif i in (3, 6):
            shot.frame = _near_empty(shot.frame, i)
        p = folder / f"shot-{i:02d}.cxi"
        write_shot(p, shot)
        if i == NAN:
            with h5py.File(p, "r+") as f:
                f["entry_1/instrument_1/detector_1/data"][...] = np.nan
        elif i == CORRUPT:
            data = p.read_bytes()
            p.write_bytes(data[: len(data) // 3])
        paths.append(p)
    return paths


def make_stack(path: pathlib.Path, frames: list[np.ndarray], template: pathlib.Path) -> pathlib.Path:
    """A shot file whose detector data is the ``(N, H, W)`` stack ``frames`` (geometry of ``template``)."""
    shutil.copyfile(template, path)
    with h5py.File(path, "r+") as f:
        det = f["entry_1/instrument_1/detector_1"]
        del det["data"]
        det.create_dataset("data", data=np.stack(frames).astype(np.float32))
    return path


@dataclass(frozen=True)
class KillsItsWorker:
    """A picklable ``options(shot)``: :data:`OPTIONS`, but a hit whose sample is ``sample`` ends the
    process that reconstructs it at once (a poison shot that kills every Dask worker it runs on)."""

    sample: str = "poison"

    def __call__(self, shot):
        if shot.sample == self.sample:
            os._exit(13)
        return OPTIONS
