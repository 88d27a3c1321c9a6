"""Natural stereo pairs with ground truth: xstereo's matchers against OpenCV's StereoSGBM (issue 10).

Usage::

    python benchmarks/natural_stereo.py [--scale 1] [--repeat 1] [--markdown docs/validation.md]

The pair is the Middlebury 2014 "motorcycle" pair that scikit-image ships in its package data
(``skimage.data.stereo_motorcycle()``: left and right RGB views 500 x 741 and the left view's
ground-truth disparity, inf where unknown); ``--scale 2`` downsamples the views by area averaging
and the truth by taking every second pixel, halved. A second case re-exposes the right view
(``0.5 R + 20`` on 0..255): a gain and offset between the two views, as two cameras with different
exposures give.

Scoring as the benchmarks do (:func:`xstereo_gpu.accuracy.disparity_scores`): over the pixels with
ground truth, ``bad-2`` / ``bad-1`` = share with no disparity or an error above 2 / 1 px (invalid
counted as bad), ``density`` = share with a disparity, ``MAE`` over those. Times are wall-clock
seconds of one call (the best of ``--repeat``), after one untimed warm-up call of each method on
the pair.

Methods, all on the same pair in the same run:

* ``xstereo sgm sad`` (before issue 10, the best of today's methods on natural images): luminance,
  ``--preprocess none --upsample 1``, SGM on the paper's SAD cost, the other options at their
  defaults but the search range.
* ``xstereo natural`` : the ``natural`` recipe (``--recipe natural``: census cost, 8-path SGM,
  uniqueness, speckle filter), and the same with ``cost = "zncc"`` (5 x 5 blocks) and with
  ``fill_holes = true``.
* ``OpenCV StereoSGBM``: on the RGB views, ``numDisparities`` covering the truth's range (a multiple
  of 16), ``blockSize`` 5, ``P1 = 8 * 3 * 5^2``, ``P2 = 32 * 3 * 5^2``, ``disp12MaxDiff`` 1,
  ``uniquenessRatio`` 10, ``speckleWindowSize`` 100, ``speckleRange`` 2, mode SGBM (OpenCV's
  documented typical values); negative outputs are invalid.

``--markdown FILE`` replaces the section between ``<!-- natural-stereo:begin -->`` and
``<!-- natural-stereo:end -->`` of FILE (appending it if absent) with the measured table.
OpenCV (``pip install opencv-python-headless``, the ``test`` extra) is needed for its rows only.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import pathlib
import platform
import subprocess
import time

import numpy as np

from xstereo_gpu.accuracy import disparity_scores
from xstereo_gpu.backend import fft_workers
from xstereo_gpu.config import MatchOptions, PipelineOptions, PreprocessOptions
from xstereo_gpu.stereo.stage import match_views

ROOT = pathlib.Path(__file__).resolve().parents[1]
BEGIN, END = "<!-- natural-stereo:begin -->", "<!-- natural-stereo:end -->"
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)  # ITU-R BT.601


def load_motorcycle(scale: int = 1, *, reexpose: bool = False):
    """``(left_rgb, right_rgb, truth)``: uint8 (H, W, 3) views and float32 (H, W) truth (inf unknown)."""
    from skimage import data

    left, right, truth = data.stereo_motorcycle()
    if reexpose:
        right = np.clip(0.5 * right.astype(np.float32) + 20, 0, 255).astype(np.uint8)
    if scale > 1:
        from skimage.transform import downscale_local_mean

        h, w = (left.shape[0] // scale) * scale, (left.shape[1] // scale) * scale
        left, right = (
            np.round(downscale_local_mean(v[:h, :w].astype(np.float32), (scale, scale, 1))).astype(np.uint8)
            for v in (left, right)
        )
        truth = truth[:h:scale, :w:scale] / np.float32(scale)
    return left, right, truth.astype(np.float32)


def luminance(rgb):
    """(H, W) float32 luminance on 0..1 of an (H, W, 3) uint8 image."""
    return (rgb[..., :3].astype(np.float32) @ _LUMA) / np.float32(255)


def search_range(truth) -> tuple[int, int]:
    """``(0, n)``, ``n`` the multiple of 16 above the largest true disparity + 2 (StereoSGBM needs it)."""
    top = float(np.max(truth[np.isfinite(truth)]))
    return 0, int(np.ceil((top + 2) / 16) * 16)


def xstereo_match(left_rgb, right_rgb, options: PipelineOptions):
    """The left disparity map of ``match_views`` on the luminance of the pair (NumPy)."""
    views = np.stack([luminance(left_rgb), luminance(right_rgb)])
    res = match_views(
        views, options.stereo, preprocess_options=options.preprocess, match_options=options.match
    )
    return np.asarray(res.disparity_left)


def opencv_sgbm(left_rgb, right_rgb, dmax: int, block: int = 5):
    """OpenCV StereoSGBM with its documented typical parameters; NaN where it gives no disparity."""
    import cv2

    sgbm = cv2.StereoSGBM_create(
        minDisparity=0,
        numDisparities=dmax,
        blockSize=block,
        P1=8 * 3 * block**2,
        P2=32 * 3 * block**2,
        disp12MaxDiff=1,
        uniquenessRatio=10,
        speckleWindowSize=100,
        speckleRange=2,
        mode=cv2.STEREO_SGBM_MODE_SGBM,
    )
    d = sgbm.compute(left_rgb, right_rgb).astype(np.float32) / 16
    d[d < 0] = np.nan
    return d


def methods(dmax: int) -> dict:
    """Name -> callable(left_rgb, right_rgb) -> left disparity map."""
    before = PipelineOptions().replace(
        preprocess=PreprocessOptions(mode="none", upsample=1),
        match=MatchOptions(method="sgm", dmin=0, dmax=dmax),
    )
    natural = PipelineOptions.for_sample("natural", "cpu")
    natural = natural.replace(match=dataclasses.replace(natural.match, dmin=0, dmax=dmax))
    out = {
        "xstereo sgm sad (before)": lambda a, b: xstereo_match(a, b, before),
        "xstereo natural (census)": lambda a, b: xstereo_match(a, b, natural),
        "xstereo natural, zncc 5x5": lambda a, b: xstereo_match(
            a, b, natural.replace(match__cost="zncc", match__block=5)
        ),
        "xstereo natural + fill_holes": lambda a, b: xstereo_match(
            a, b, natural.replace(match__fill_holes=True)
        ),
    }
    try:
        import cv2  # noqa: F401

        out["OpenCV StereoSGBM"] = lambda a, b: opencv_sgbm(a, b, dmax)
    except ImportError:
        print("OpenCV not installed: no StereoSGBM rows (pip install opencv-python-headless)")
    return out


def run(scale: int = 1, repeat: int = 1) -> list[dict]:
    rows = []
    for case, reexpose in (("motorcycle", False), ("motorcycle, right re-exposed 0.5 R + 20", True)):
        left, right, truth = load_motorcycle(scale, reexpose=reexpose)
        dmin, dmax = search_range(truth)
        for name, fn in methods(dmax).items():
            fn(left, right)  # warm-up (imports, thread pools, caches)
            best, disp = np.inf, None
            for _ in range(max(1, repeat)):
                t0 = time.perf_counter()
                disp = fn(left, right)
                best = min(best, time.perf_counter() - t0)
            s = disparity_scores(disp, truth)
            rows.append({"case": case, "method": name, "shape": left.shape[:2], "range": (dmin, dmax),
                         "seconds": best, **s})  # fmt: skip
            print(
                f"{case:40s} {name:30s} bad-2 {100 * s['bad2']:5.1f} %  bad-1 {100 * s['bad1']:5.1f} %  "
                f"density {100 * s['density']:5.1f} %  MAE {s['mae']:.2f} px  {best:6.2f} s",
                flush=True,
            )
    return rows


def markdown(rows: list[dict], scale: int, repeat: int, machine: str = "") -> str:
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT, check=False
    ).stdout.strip()
    try:
        import cv2

        cv = f"OpenCV {cv2.__version__}"
    except ImportError:
        cv = "no OpenCV"
    h, w = rows[0]["shape"]
    lines = [
        BEGIN,
        "## Natural stereo pairs against OpenCV's StereoSGBM (issue 10)",
        "",
        f"Generated by `python benchmarks/natural_stereo.py --scale {scale} --repeat {repeat} --markdown "
        f"docs/validation.md` (do not edit by hand) on {dt.date.today().isoformat()}, commit `{commit}`, "
        f"{platform.processor() or platform.machine()} CPU, {fft_workers()} threads, NumPy "
        f"backend, Python {platform.python_version()}, NumPy {np.__version__}, {cv}"
        + (f" ({machine})." if machine else "."),
        "",
        f"Middlebury 2014 *motorcycle* ({w} x {h}, as shipped by scikit-image), search range "
        f"{rows[0]['range'][0]}..{rows[0]['range'][1]} px; the second case divides the right view's "
        "exposure by 2 and adds 20 grey levels. Over the pixels with ground truth: bad-2 / bad-1 = share "
        "with no disparity or an error above 2 / 1 px (invalid counts as bad), density = share with a "
        "disparity, MAE over those. xstereo matches the luminance; StereoSGBM the RGB views with its "
        "documented typical parameters (block 5, P1 = 8*3*25, P2 = 32*3*25, uniqueness 10, speckle "
        "100 / 2). Time: wall clock of one call, best of the repeats, after a warm-up call.",
        "",
        "| case | method | bad-2 % | bad-1 % | density % | MAE px | time s |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['case']} | {r['method']} | {100 * r['bad2']:.1f} | {100 * r['bad1']:.1f} | "
            f"{100 * r['density']:.1f} | {r['mae']:.2f} | {r['seconds']:.2f} |"
        )
    lines += [
        "",
        '`xstereo natural` is `--recipe natural` (`PipelineOptions.for_sample("natural")`); `fill_holes` '
        "fills what the checks rejected with the background disparity of each row (a guess, not a match: "
        "off in the recipe). `sgm sad (before)` is the best method of the X-ray recipes on this pair "
        "before the census cost. Most of xstereo's time on the CPU is the 8-path aggregation in NumPy "
        "(`sgm._aggregate`; on CuPy the CUDA kernel runs it); StereoSGBM is compiled SIMD code.",
        END,
    ]
    return "\n".join(lines) + "\n"


def write_section(path: pathlib.Path, section: str) -> None:
    """Replace the marked section of ``path`` (or append it), atomically."""
    text = path.read_text() if path.exists() else ""
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        tail = rest.split(END, 1)[1].lstrip("\n")
        text = head + section + tail
    else:
        text = text.rstrip("\n") + ("\n\n" if text else "") + section
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scale", type=int, default=1, help="downsampling factor of the pair (default 1)")
    ap.add_argument("--repeat", type=int, default=1, help="timed calls per method (best kept)")
    ap.add_argument("--markdown", help="write the table into this markdown file's marked section")
    ap.add_argument("--machine", default="", help="a note on the machine for the markdown (shared, load)")
    args = ap.parse_args()
    rows = run(args.scale, args.repeat)
    if args.markdown:
        write_section(pathlib.Path(args.markdown), markdown(rows, args.scale, args.repeat, args.machine))


if __name__ == "__main__":
    main()
