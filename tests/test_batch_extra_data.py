"""EuXFEL runs as a batch source (xstereo_gpu/io/xfel.py, kind "extra-data" of batch/sources.py).

The runs are written by EXtra-data's own test helpers (``extra_data.tests.mockdata``: real HDF5 files
in the European XFEL format, with INDEX, METADATA and sequence files), and their image datasets are
then filled with simulated stereo frames (or, for the detector module, known values).
"""

from __future__ import annotations

import json
import pickle
import shutil
import sys

import h5py
import numpy as np
import pytest
from batch_helpers import OPTIONS

from xstereo_gpu import SimulationOptions, simulate_shot
from xstereo_gpu.batch import RunStore, VetoOptions, open_source, process_run
from xstereo_gpu.batch.cluster import one_shot_source, reconstruct_indices
from xstereo_gpu.errors import InputError
from xstereo_gpu.io.cxi import MASK_INVALID
from xstereo_gpu.shot import Shot

# optional dependency (the test extra): skip where it is missing, e.g. on the lent GPU image
pytest.importorskip("extra_data")
from extra_data.tests.mockdata import write_file  # noqa: E402
from extra_data.tests.mockdata.basler_camera import BaslerCamera  # noqa: E402
from extra_data.tests.mockdata.detectors import AGIPDModule  # noqa: E402
from extra_data.tests.mockdata.xgm import XGM  # noqa: E402

CAMERA = "SPB_EXP_STEREO/CAM/CCD"
SOURCE = f"{CAMERA}:daqOutput"
KEY = "data.image.pixels"
PIXELS = f"INSTRUMENT/{SOURCE}/data/image/pixels"
MODULE = "SPB_DET_AGIPD1M-1/DET/{}CH0"
TRAINS = (10000, 10001, 10002, 10003, 10004)
#: What each train of the camera run holds.
OK, BLANK, DEAD, DARK, MISSING = TRAINS  # a hit, a faint frame, all zeros, stray photons, data missing
STATUS = {0: "ok", 1: "blank", 2: "failed", 3: "blank", 4: "failed"}


def _sim(seed: int) -> Shot:
    """A small simulated shot whose counts fit the camera's uint16 (about 2 s to reconstruct)."""
    return simulate_shot(
        SimulationOptions(
            binning=8,
            pattern_size=128,
            cross_size_um=(3.0, 3.0),
            arm_width_um=1.0,
            supersample=1,
            photons=4e6,
            seed=seed,
        )
    )


@pytest.fixture(scope="module")
def sim() -> Shot:
    return _sim(200)


def _geometry(shot: Shot) -> dict:
    return dict(
        wavelength_m=shot.wavelength_m,
        distance_m=shot.distance_m,
        detector_pixel_m=shot.detector_pixel_m,
        angles_deg=shot.angles_deg,
        centres_px=shot.centres_px.tolist(),
        pattern_size=shot.pattern_size,
    )


@pytest.fixture(scope="module")
def geo(sim) -> dict:
    return _geometry(sim)


@pytest.fixture(scope="module")
def raw_run(tmp_path_factory, sim):
    """``raw/r0001``: an XGM and the stereo camera (5 trains in 2 sequence files), a raw AGIPD module."""
    run = tmp_path_factory.mktemp("raw") / "r0001"
    run.mkdir()
    h, w = sim.frame.shape
    assert sim.frame.max() < 65535
    frames = {
        OK: sim.frame,
        BLANK: sim.frame * 1e-4,
        DEAD: np.zeros_like(sim.frame),
        DARK: np.random.default_rng(3).poisson(0.01, sim.frame.shape),
        MISSING: sim.frame,
    }
    for seq, (first, n) in enumerate(((10000, 3), (10003, 2))):
        path = run / f"RAW-R0001-DA01-S{seq:05d}.h5"
        devices = [XGM("SA1_XTD2_XGM/DOOCS/MAIN"), BaslerCamera(CAMERA, sensor_size=(h, w))]
        write_file(str(path), devices, ntrains=n, firsttrain=first, chunksize=1)
        with h5py.File(path, "r+") as f:
            for i in range(n):
                f[PIXELS][i] = np.round(frames[first + i]).astype(np.uint16)
            if seq == 1:  # the DAQ indexed train 10004 but its image never reached the file
                f[f"INDEX/{SOURCE}/data/first"][1] = 7
    write_file(
        str(run / "RAW-R0001-AGIPD00-S00000.h5"),
        [AGIPDModule(MODULE.format(0), frames_per_train=2)],
        ntrains=3,
        chunksize=1,
    )
    return run


@pytest.fixture(scope="module")
def proc_run(tmp_path_factory):
    """``proc/r0001``: two corrected AGIPD modules, 3 trains of 2 pulses; module 0 filled, frame by frame."""
    run = tmp_path_factory.mktemp("proc") / "r0001"
    run.mkdir()
    rng = np.random.default_rng(5)
    frames = (
        rng.poisson(20.0, (6, 512, 128)).astype(np.float32) * np.arange(1, 7, dtype=np.float32)[:, None, None]
    )
    for m in (0, 1):
        path = run / f"CORR-R0001-AGIPD{m:02d}-S00000.h5"
        write_file(
            str(path), [AGIPDModule(MODULE.format(m), frames_per_train=2, raw=False)], ntrains=3, chunksize=1
        )
        if m == 0:
            with h5py.File(path, "r+") as f:
                f[f"INSTRUMENT/{MODULE.format(0)}:xtdf/image/data"][...] = frames
                f[f"INSTRUMENT/{MODULE.format(0)}:xtdf/image/mask"][3, :4, :] = 1  # train 10001 pulse 1
    return run, frames


MODULE_GEO = dict(
    wavelength_m=2.4e-8,
    distance_m=0.026,
    detector_pixel_m=2e-4,
    angles_deg=(9.5, 9.5),
    centres_px=[[128, 64], [384, 64]],
    pattern_size=64,
)


def test_a_run_directory_is_read_train_by_train(raw_run, geo, sim):
    src = open_source(raw_run, source=SOURCE, key=KEY, **geo)
    assert src.kind == "extra-data" and len(src) == 5 and src.indices == tuple(range(5))
    assert [src.label(i) for i in src.indices] == [f"{raw_run}:train {t}" for t in TRAINS]
    assert not src.xfel.per_pulse and src.xfel.files == (
        "RAW-R0001-DA01-S00000.h5",
        "RAW-R0001-DA01-S00001.h5",
    )
    shot = src.read(0)
    assert shot.source == src.label(0) and shot.frame.dtype == np.float32
    np.testing.assert_array_equal(shot.frame, sim.frame)
    assert shot.extra["train_id"] == OK and shot.extra["xfel_source"] == SOURCE
    assert (shot.wavelength_m, shot.pattern_size, shot.angles_deg) == (sim.wavelength_m, 128, (9.5, 9.5))
    np.testing.assert_array_equal(shot.centres_px, sim.centres_px)
    # a directory alone is a EuXFEL run; so is kind="extra-data"
    assert open_source(str(raw_run), kind="extra-data", source=SOURCE, key=KEY, **geo).label(3) == src.label(
        3
    )
    assert json.loads(json.dumps(src.describe()))["xfel"]["source"] == SOURCE


def test_selection_start_stop_step(raw_run, geo):
    src = open_source(raw_run, source=SOURCE, key=KEY, start=1, stop=5, step=2, **geo)
    assert src.indices == (1, 3)
    assert [lab for _, lab, _ in src] == [f"{raw_run}:train {BLANK}", f"{raw_run}:train {DARK}"]
    assert open_source(raw_run, source=SOURCE, key=KEY, start=-2, **geo).indices == (3, 4)
    with pytest.raises(InputError, match="step"):
        open_source(raw_run, source=SOURCE, key=KEY, step=0, **geo)


def test_a_pulse_resolved_module_gives_one_shot_per_pulse(proc_run):
    run, frames = proc_run
    src = open_source(run, source=MODULE.format(0) + ":xtdf", key="image.data", step=1, **MODULE_GEO)
    assert src.xfel.per_pulse and len(src) == 6
    assert src.label(3) == f"{run}:train 10001 pulse 1"
    assert [src.label(i).split(":")[-1] for i in (0, 1, 5)] == [
        "train 10000 pulse 0",
        "train 10000 pulse 1",
        "train 10002 pulse 1",
    ]
    shot = src.read(3)
    np.testing.assert_array_equal(shot.frame, frames[3])
    assert shot.extra["train_id"] == 10001 and shot.extra["pulse"] == 1 and shot.extra["pulse_id"] == 1
    assert src.xfel.mask_key == "image.mask"
    assert (shot.mask[:4] == MASK_INVALID).all() and not shot.mask[4:].any()
    sel = open_source(run, source=MODULE.format(0) + ":xtdf", key="image.data", start=1, step=2, **MODULE_GEO)
    assert [sel.label(i).split(":")[-1] for i in sel.indices] == [
        f"train {t} pulse 1" for t in (10000, 10001, 10002)
    ]


def test_missing_geometry_names_the_options(raw_run, geo):
    with pytest.raises(InputError) as err:
        open_source(raw_run, source=SOURCE, key=KEY)
    msg = str(err.value)
    for name, flag in (
        ("wavelength_m", "--wavelength"),
        ("centres_px", "--centres"),
        ("pattern_size", "--pattern-size"),
    ):
        assert name in msg and flag in msg
    assert "records no stereo geometry" in msg
    partial = {k: v for k, v in geo.items() if k != "angles_deg"}
    with pytest.raises(InputError, match=r"angles_deg not given .*--angles") as err:
        open_source(raw_run, source=SOURCE, key=KEY, **partial)
    assert "wavelength_m" not in str(err.value)
    with pytest.raises(InputError, match="right centre.*inside the 256 x 256 frames"):
        open_source(raw_run, source=SOURCE, key=KEY, **{**geo, "centres_px": [[128, 88], [128, 300]]})
    with pytest.raises(InputError, match="pattern-size"):
        open_source(raw_run, source=SOURCE, key=KEY, **{**geo, "pattern_size": 12.5})
    with pytest.raises(InputError, match="frame"):
        open_source(raw_run, source=SOURCE, key=KEY, frame=2, **geo)


def test_missing_source_or_key_lists_the_detector_sources(raw_run, proc_run, geo):
    for kw in ({}, {"key": KEY}, {"source": "SPB_EXP_STEREO/CAM/NOPE:daqOutput", "key": KEY}):
        with pytest.raises(InputError) as err:
            open_source(raw_run, **kw, **geo)
        msg = str(err.value)
        assert "--source" in msg and f"{SOURCE!r} (key {KEY!r}: 256 x 256 uint16 frames)" in msg
        assert "XGM" not in msg  # no 2D images: not a candidate
        assert "entries (2, 512, 128)" in msg  # the raw AGIPD module, listed as not readable
    with pytest.raises(InputError, match="control .slow-data. source"):
        open_source(raw_run, source="SA1_XTD2_XGM/DOOCS/MAIN", key="pulseEnergy.photonFlux", **geo)
    with pytest.raises(InputError, match=rf"no key given; expected key= \(--key KEY\).*{KEY}"):
        open_source(raw_run, source=SOURCE, **geo)
    with pytest.raises(InputError, match="no key 'data.image.pixel'"):
        open_source(raw_run, source=SOURCE, key="data.image.pixel", **geo)
    with pytest.raises(InputError, match="data and gain"):
        open_source(raw_run, source=MODULE.format(0) + ":xtdf", key="image.data", **geo)
    run, _ = proc_run
    with pytest.raises(InputError) as err:
        open_source(run, **MODULE_GEO)
    assert "<M>CH0:xtdf for module M in 0, 1 (2 modules" in str(err.value)
    assert "image.mask" not in str(err.value)  # a mask is not a frame
    for name in ("SPB_DET_AGIPD1M-1/DET", "SPB_DET_AGIPD1M-1/DET/*CH0:xtdf"):
        with pytest.raises(InputError, match="2 detector modules.*EXtra-geom"):
            open_source(run, source=name, key="image.data", **MODULE_GEO)


def test_not_a_run(tmp_path, raw_run, geo):
    with pytest.raises(InputError, match="no .h5 files"):
        open_source(tmp_path, source=SOURCE, key=KEY, **geo)
    with pytest.raises(InputError, match="no such directory"):
        open_source(tmp_path / "r9999", source=SOURCE, key=KEY, **geo)
    with pytest.raises(InputError, match="one EuXFEL run directory"):
        open_source([raw_run, raw_run.parent], source=SOURCE, key=KEY, **geo)
    with pytest.raises(InputError, match="kind"):
        open_source(raw_run, kind="agipd")


def test_bad_trains_are_failed_items_and_the_run_goes_on(raw_run, geo):
    items = list(open_source(raw_run, source=SOURCE, key=KEY, **geo))
    assert [i for i, _, _ in items] == list(range(5))
    for i, label, item in items:
        if STATUS[i] == "failed":
            assert isinstance(item, InputError) and label in str(item), (i, item)
        else:
            assert isinstance(item, Shot) and item.source == label
    assert "constant frame" in str(items[2][2])
    assert "RAW-R0001-DA01-S00001.h5" in str(items[4][2]) and "missing data" in str(items[4][2])


def test_a_damaged_sequence_file_fails_its_trains(raw_run, geo, tmp_path):
    run = tmp_path / "r0001"
    shutil.copytree(raw_run, run)
    src = open_source(run, source=SOURCE, key=KEY, **geo)
    seq = run / "RAW-R0001-DA01-S00001.h5"
    seq.write_bytes(seq.read_bytes()[:4096])  # truncated after the run was opened
    items = list(src)
    assert isinstance(items[0][2], Shot) and isinstance(items[1][2], Shot)
    for i in (3, 4):
        assert isinstance(items[i][2], InputError) and str(seq) in str(items[i][2])


def test_sources_pickle_and_one_shot_sources_are_small(raw_run, proc_run, geo):
    src = open_source(raw_run, source=SOURCE, key=KEY, **geo)
    back = pickle.loads(pickle.dumps(src))
    assert back.describe() == src.describe() and back.label(3) == src.label(3)
    np.testing.assert_array_equal(back.read(0).frame, src.read(0).frame)
    one = one_shot_source(src, 3)
    data = pickle.dumps(one)
    assert len(data) < 2000
    ((_, label, shot),) = list(pickle.loads(data).items())
    assert label == src.label(3) and one.xfel.files == ("RAW-R0001-DA01-S00001.h5",)
    np.testing.assert_array_equal(shot.frame, src.read(3).frame)
    # the worker's task, called here: it reads the one-shot source (a blank: no phasing)
    (outcome,) = reconstruct_indices(
        [pickle.loads(pickle.dumps(one_shot_source(src, 1)))], [1], [src.label(1)], OPTIONS, VetoOptions()
    )
    assert (outcome.record.status, outcome.record.label) == ("blank", f"{raw_run}:train {BLANK}")
    run, frames = proc_run
    pulses = open_source(run, source=MODULE.format(0) + ":xtdf", key="image.data", **MODULE_GEO)
    ((_, label, shot),) = list(pickle.loads(pickle.dumps(one_shot_source(pulses, 5))).items())
    assert label == f"{run}:train 10002 pulse 1"
    np.testing.assert_array_equal(shot.frame, frames[5])


def test_process_run_on_a_euxfel_run(raw_run, geo, tmp_path):
    src = open_source(raw_run, source=SOURCE, key=KEY, **geo)
    records = list(process_run(src, OPTIONS, store=tmp_path / "store", backend="numpy"))
    assert {r.index: r.status for r in records} == STATUS
    assert records[0].results is not None and records[0].label == f"{raw_run}:train {OK}"
    store = RunStore(tmp_path / "store")
    assert store.statuses() == STATUS
    assert store.labels() == {i: f"{raw_run}:train {t}" for i, t in enumerate(TRAINS)}
    with h5py.File(store.run_file, "r") as f:
        meta = json.loads(f["metadata"].attrs["sources"])
    assert meta["kind"] == "extra-data" and meta["xfel"] == src.xfel.describe()
    # a rerun over the same run skips everything stored
    assert list(process_run(src, OPTIONS, store=tmp_path / "store", backend="numpy")) == []


def test_without_extra_data_the_error_says_how_to_install(raw_run, geo, monkeypatch):
    monkeypatch.setitem(sys.modules, "extra_data", None)
    with pytest.raises(InputError, match=r"pip install 'xstereo-gpu\[xfel\]'"):
        open_source(raw_run, source=SOURCE, key=KEY, **geo)


def test_cli_batch_on_a_euxfel_run(raw_run, geo, tmp_path, capsys):
    """``xstereo batch RUN_DIR --source --key`` + the geometry flags: the statuses of process_run, exit
    3 for the failed trains; without --source the error lists the run's image sources."""
    from xstereo_gpu.cli import main

    geometry = [
        *("--wavelength", str(geo["wavelength_m"]), "--distance", str(geo["distance_m"])),
        *("--detector-pixel", str(geo["detector_pixel_m"]), "--pattern-size", str(geo["pattern_size"])),
        *("--angles", *map(str, geo["angles_deg"])),
        *("--centres", *(str(v) for v in np.ravel(geo["centres_px"]))),
    ]
    tiny = ["--recipe", "cross", "--runs", "2", "--iterations", "10", "--workers", "0", "-q"]
    store = tmp_path / "store"
    argv = ["batch", str(raw_run), "-o", str(store), "--source", SOURCE, "--key", KEY, *geometry, *tiny]
    assert main(argv) == 3
    assert RunStore(store).statuses() == STATUS
    assert RunStore(store).labels()[0] == f"{raw_run}:train {OK}"
    capsys.readouterr()
    assert main(["batch", str(raw_run), "-o", str(tmp_path / "other"), *geometry, *tiny]) == 2
    assert SOURCE in capsys.readouterr().err
