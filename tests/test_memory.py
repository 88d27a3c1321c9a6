"""Memory planning (issue 11): the budget, the estimates, the splits that fit and the early refusals.

Phasing in batches of runs and SGM in strips must give the same results as one batch / one volume
(bit-identical on NumPy); a request that cannot fit ends with exit status 2 and a message before any
compute. Small sizes only.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import scipy.ndimage as ndi
from _helpers import TINY

import xstereo_gpu
from xstereo_gpu import memory
from xstereo_gpu.cli import main
from xstereo_gpu.config import MatchOptions, PhasingOptions
from xstereo_gpu.errors import InputError
from xstereo_gpu.memory import (
    GIB,
    format_size,
    matching_bytes,
    memory_budget,
    parse_size,
    phasing_bytes,
    plan_matching,
    plan_phasing,
    sgm_strip_bytes,
)
from xstereo_gpu.phasing.runs import PhaseRetrieval, phase_retrieval
from xstereo_gpu.stereo.sgm import semi_global_match

# -- sizes and budget ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, value",
    [
        ("4G", 4 * GIB),
        ("512M", 512 << 20),
        ("2GiB", 2 * GIB),
        ("1.5GB", 3 * GIB // 2),
        ("1000000", 1000000),
        ("64k", 64 << 10),
        (" 3 g ", 3 * GIB),
        ("1T", 1 << 40),
        (4096, 4096),
        ("1e6", 1000000),
    ],
)
def test_parse_size(text, value):
    assert parse_size(text) == value


@pytest.mark.parametrize("text", ["", "abc", "-1G", "0", "4X", "GiB", "4 GiBs", "1.2.3G", "0.1"])
def test_parse_size_rejects(text):
    with pytest.raises(InputError) as err:
        parse_size(text)
    assert err.value.where == "--max-memory" and repr(text) in err.value.found


def test_budget_from_free_memory_and_override():
    auto = memory_budget(np)
    assert 0 < auto["budget_bytes"] <= auto["limit_bytes"] <= auto["available_bytes"]
    assert auto["budget_bytes"] <= memory.CPU_SPLIT_BYTES  # splits aim at 2 GiB on the CPU
    assert "MemAvailable" in auto["source"] or "sysconf" in auto["source"] or "cgroup" in auto["source"]
    given = memory_budget(np, 123456789)
    assert given["budget_bytes"] == given["limit_bytes"] == 123456789 and given["source"] == "--max-memory"
    assert format_size(8.19 * GIB) == "8.19 GiB"


# -- estimates ---------------------------------------------------------------------------------------


def test_estimates_grow_with_the_problem():
    assert phasing_bytes(2, 32, 256) < phasing_bytes(2, 45, 256) < phasing_bytes(2, 45, 512)
    assert phasing_bytes(2, 32, 256, 4) < phasing_bytes(2, 32, 256, 8) < phasing_bytes(2, 32, 256)
    assert phasing_bytes(2, 32, 1024, 1) < phasing_bytes(2, 32, 1024)
    # the case: the SGM cost volume of the paper's size is 8.19 GiB (twice that with the sum)
    assert sgm_strip_bytes(4096, 4096, 131, 4, None) == 2 * 4096 * 4096 * 131 * 4
    assert sgm_strip_bytes(4096, 4096, 131, 4, 64) < sgm_strip_bytes(4096, 4096, 131, 4, None) / 20
    assert sgm_strip_bytes(4096, 4096, 131, 4, 64) < sgm_strip_bytes(4096, 4096, 131, 8, 64)
    bm = matching_bytes(4096, 4096, 131, method="bm")
    assert (
        bm
        < matching_bytes(4096, 4096, 131, method="sgm", strip_rows=64)
        < matching_bytes(4096, 4096, 131, method="sgm")
    )
    assert matching_bytes(1024, 1024, 131, method="sgm") < matching_bytes(1024, 1024, 261, method="sgm")
    assert matching_bytes(4096, 4096, 131, method="bm") == matching_bytes(
        4096, 4096, 11, method="bm"
    )  # no volume


def test_plans_split_to_fit_and_refuse_what_cannot():
    whole = plan_phasing(2, 32, 1024, 64 * GIB)
    assert whole.batches == 1 and whole.runs_per_batch == 32
    p = plan_phasing(2, 32, 1024, 2 * GIB)
    assert p.batches > 1 and p.estimated_peak_bytes <= 2 * GIB
    assert phasing_bytes(2, 32, 1024, p.runs_per_batch + 1) > 2 * GIB  # the largest batch that fits
    with pytest.raises(InputError) as err:
        plan_phasing(2, 32, 1024, 100 << 20, where="--pattern-size")
    assert err.value.where == "--pattern-size" and "needs about" in err.value.found
    assert "--max-memory" in err.value.expected and "100.00 MiB" in err.value.expected
    # nothing fits the budget, but the smallest split fits the limit: it is used
    small = plan_phasing(2, 32, 1024, 100 << 20, limit=64 * GIB)
    assert small.runs_per_batch == 1 and small.batches == 32
    assert plan_matching(4096, 4096, 131, 100 << 20, limit=64 * GIB, method="sgm").strips > 1
    assert plan_matching(4096, 4096, 131, 100 << 20, limit=64 * GIB, method="bm").strips == 1
    m = plan_matching(4096, 4096, 131, 2 * GIB, method="sgm")
    assert m.strip_rows is not None and m.strips > 1 and m.estimated_peak_bytes <= 2 * GIB
    assert plan_matching(4096, 4096, 131, 2 * GIB, method="bm").strip_rows is None
    with pytest.raises(InputError) as err:
        plan_matching(4096, 4096, 131, 1 * GIB, method="sgm")
    assert "semi-global matching of 4096 x 4096" in err.value.found and "--method bm" in err.value.expected


# -- phasing in batches ---------------------------------------------------------------------------------


def _pattern(n: int, views: int = 2):
    rng = np.random.default_rng(1)
    obj = np.zeros((views, n, n), np.complex64)
    q = n // 4
    obj[:, q + 1 : 2 * q + 2, q : 2 * q + 3] = rng.random((views, q + 1, q + 3))
    inten = np.abs(np.fft.fftshift(np.fft.fft2(obj), axes=(-2, -1))) ** 2
    return inten.astype(np.float32), np.ones(inten.shape, dtype=bool)


@pytest.mark.parametrize("n, initial", [(32, "autocorrelation"), (33, "box")])
def test_phasing_batches_are_bit_identical(n, initial):
    inten, valid = _pattern(n)
    o = PhasingOptions(runs=5, iterations=24, check_every=8)
    one = phase_retrieval(inten, valid, o, initial_support=initial)
    # a budget too small for all runs at once: several batches, chosen by the plan
    budget = phasing_bytes(2, 5, n, 2)
    many = phase_retrieval(inten, valid, o, initial_support=initial, max_memory=budget)
    assert one.history["memory"]["batches"] == 1
    assert many.history["memory"]["batches"] == 3 and many.history["memory"]["runs_per_batch"] == 2
    for name in ("views", "best", "best_eps", "supports"):
        assert np.array_equal(getattr(one, name), getattr(many, name)), name
    for key in (
        "iterations",
        "eps",
        "reference",
        "twin",
        "shifts",
        "peak",
        "fourier_error",
        "spread",
        "averaged",
    ):
        assert np.array_equal(one.history[key], many.history[key]), key


def test_batch_start_is_the_runs_slice():
    inten, valid = _pattern(32)
    o = PhasingOptions(runs=4, iterations=10, check_every=5)
    full = PhaseRetrieval(inten, valid, o)
    part = PhaseRetrieval(inten, valid, o, run_range=(1, 3))
    assert np.array_equal(full.x[:, 1:3], part.x) and np.array_equal(full.support[:, 1:3], part.support)
    with pytest.raises(InputError):
        PhaseRetrieval(inten, valid, o, run_range=(3, 3))


def test_phasing_that_cannot_fit_is_refused_before_allocating(monkeypatch):
    inten, valid = _pattern(32)

    def boom(*a, **k):  # pragma: no cover - must not be reached
        raise AssertionError("PhaseRetrieval was constructed")

    monkeypatch.setattr(xstereo_gpu.phasing.runs, "PhaseRetrieval", boom)
    with pytest.raises(InputError) as err:
        phase_retrieval(inten, valid, PhasingOptions(runs=4), max_memory=1000)
    assert err.value.where == "--max-memory"


# -- SGM in strips ---------------------------------------------------------------------------------------


def _pair(h=45, w=60, shift=3):
    rng = np.random.default_rng(0)
    img = ndi.gaussian_filter(rng.random((h, w)), 1.5)
    img = ((img - img.min()) / (img.max() - img.min())).astype(np.float32)
    return img, np.roll(img, -shift, axis=1)


@pytest.mark.parametrize("paths", [4, 8])
def test_sgm_strips_are_bit_identical(paths):
    left, right = _pair()
    o = MatchOptions(dmin=-6, dmax=6, block=3, method="sgm", sgm_paths=paths)
    whole = semi_global_match(left, right, o, strip_rows=None, max_memory=GIB)
    fields = (
        "disparity_left",
        "disparity_right",
        "cost_left",
        "cost_right",
        "confidence_left",
        "confidence_right",
    )
    for rows in (1, 7, 16, 44):
        part = semi_global_match(left, right, o, strip_rows=rows)
        for f in fields:
            assert np.array_equal(getattr(whole, f), getattr(part, f), equal_nan=True), (rows, f)
    assert np.nanmedian(whole.disparity_left) == pytest.approx(3, abs=0.1)


def test_sgm_budget_chooses_strips(monkeypatch):
    left, right = _pair(64, 80)
    o = MatchOptions(dmin=-6, dmax=6, block=3, method="sgm")
    calls = []
    import xstereo_gpu.stereo.sgm as sgm

    real = sgm._strip_match
    monkeypatch.setattr(sgm, "_strip_match", lambda *a, **k: (calls.append(a[3]), real(*a, **k))[1])
    budget = plan_matching(64, 80, 13, 10**12, method="sgm").estimated_peak_bytes - 1
    split = semi_global_match(left, right, o, max_memory=budget)
    assert calls and 1 <= calls[0] < 64
    whole = semi_global_match(left, right, o, max_memory=10**12)
    assert np.array_equal(split.disparity_left, whole.disparity_left, equal_nan=True)
    with pytest.raises(InputError):
        semi_global_match(left, right, o, max_memory=1000)


# -- the CLI: early refusals, the plan in summary.json ----------------------------------------------------


def _refused(argv, capsys) -> str:
    rc = main([str(a) for a in argv])
    err = capsys.readouterr().err
    assert rc == 2, err
    assert "error:" in err and "Traceback" not in err
    return err


# the refusals of a declared 50000^2 dataset, `phase --size 100000` and a pattern twice the frame are rows
# of the bad-input table (tests/test_cli_bad_input.py)


def test_request_that_cannot_fit_is_refused_before_compute(monkeypatch, tmp_path, capsys):
    import xstereo_gpu.simulate as sim

    def boom(*a, **k):  # pragma: no cover - must not be reached
        raise AssertionError("the demo simulated before refusing")

    monkeypatch.setattr(sim, "simulate_shot", boom)
    err = _refused(
        ["demo", "--paper-size", "--method", "sgm", "--max-memory", "1G", "-o", tmp_path / "out", *TINY],
        capsys,
    )
    assert "--max-memory" in err and "semi-global matching of 4096 x 4096" in err
    err = _refused(["demo", "--max-memory", "4X", "-o", tmp_path / "out", *TINY], capsys)
    assert "'4X'" in err
    assert not (tmp_path / "out").exists()


def test_stereo_refuses_before_matching(tmp_path, capsys):
    rng = np.random.default_rng(2)
    np.save(tmp_path / "l.npy", rng.random((32, 32), dtype=np.float32))
    np.save(tmp_path / "r.npy", rng.random((32, 32), dtype=np.float32))
    err = _refused(
        [
            "stereo",
            tmp_path / "l.npy",
            tmp_path / "r.npy",
            "-o",
            tmp_path / "out",
            "--max-memory",
            "1M",
            "-q",
        ],
        capsys,
    )
    assert "needs about" in err


def test_summary_records_the_memory_plan(shot_file, tmp_path, capsys):
    out = tmp_path / "out"
    # 11 MiB: too little for both runs at once and for the SGM volumes of 128^2 x 131 disparities
    rc = main(
        [
            str(a)
            for a in [
                "run",
                shot_file,
                "-o",
                out,
                *TINY,
                "--iterations",  # 10 iterations leave views too rough to match (0 valid disparities)
                "40",
                "--method",
                "sgm",
                "--upsample",
                "1",
                "--max-memory",
                "11M",
            ]
        ]
    )
    assert rc == 0, capsys.readouterr().err
    mem = json.loads((out / "summary.json").read_text())["memory"]
    assert mem["budget_bytes"] == 11 << 20 and mem["budget_source"] == "--max-memory"
    assert mem["phasing"]["batches"] == 2 and mem["phasing"]["estimated_peak_bytes"] <= 11 << 20
    assert mem["matching"]["method"] == "sgm" and mem["matching"]["strips"] > 1
    assert mem["measured_peak_rss_bytes"] > 0


def test_module_has_no_state():
    assert memory.AUTO_FRACTION < 1
