"""Roofline figure and table of the hot paths from ``xstereo bench --json`` output.

Usage::

    python benchmarks/roofline.py BENCH.json [-o roofline.png] [--md roofline.md]

``BENCH.json`` is what ``xstereo bench --json`` writes; the JSON of
``pytest benchmarks/test_bench_kernels.py --benchmark-json`` works too (its ``extra_info`` holds
the same rows). Writes a PNG (default: next to the input, ``<stem>_roofline.png``) with two panels
per timed hot path, kernels and twins alike:

- left: achieved memory throughput [GB/s] (the bytes the call must move over its time) against the
  device-to-device copy bandwidth measured in the same run (the dashed line);
- right: the fraction of the time floor reached (floor = those bytes at the copy bandwidth, plus
  the FFT pairs a DM iteration cannot avoid, measured in the same run): 100 % is the hardware
  limit; the label gives the time, and the ratio to issue 3's target where one applies.

and a Markdown table (default ``<stem>_roofline.md``) with the same numbers.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys

__all__ = ["load_rows", "markdown_table", "plot", "main"]


def load_rows(path) -> tuple[dict, list[dict]]:
    """Device facts and the timed hot-path rows of a bench JSON (either format).

    Returns
    -------
    device : dict
        Device, driver, clocks, copy bandwidth [GB/s] and FFT pair time [ms].
    rows : list of dict
        Rows with ``bytes`` and a ``time_ms`` (the limits themselves and failed kernels left out).
    """
    data = json.loads(pathlib.Path(path).read_text())
    if "benchmarks" in data:  # pytest-benchmark JSON
        rows = [dict(b.get("extra_info", {})) for b in data["benchmarks"]]
        rows = [r for r in rows if "name" in r]
        device = (
            {
                k: rows[0].get(k)
                for k in (
                    "device",
                    "backend",
                    "driver",
                    "sm_clock_mhz",
                    "sm_clock_max_mhz",
                    "copy_bandwidth_gb_per_s",
                    "fft_pair_ms",
                )
            }
            if rows
            else {}
        )
    else:  # xstereo bench --json
        rows = list(data.get("rows", []))
        device = dict(data.get("device", {}))
        device["copy_bandwidth_gb_per_s"] = data.get("bandwidth_bytes_per_s", float("nan")) / 1e9
        device["fft_pair_ms"] = data.get("fft_pair_s", float("nan")) * 1e3
    rows = [r for r in rows if r.get("time_ms") and r.get("bytes") and r.get("fraction_of_floor") is not None]
    if not rows:
        raise SystemExit(
            f"{path}: no timed hot-path rows with a cost model (is it `xstereo bench --json` output?)"
        )
    return device, rows


def _fmt(v, spec: str, none: str = "-") -> str:
    return none if v is None else format(v, spec)


def markdown_table(device: dict, rows: list[dict], source: str = "") -> str:
    """Markdown: a line of device facts and limits, then one table row per hot-path case."""
    head = (
        f"Device: {device.get('device')} (backend {device.get('backend')}"
        + (
            f", driver {device['driver']}, SM clock "
            f"{device.get('sm_clock_mhz')}/{device.get('sm_clock_max_mhz')} MHz"
            if device.get("driver")
            else ""
        )
        + "). "
        f"Measured copy bandwidth {device.get('copy_bandwidth_gb_per_s', float('nan')):.1f} GB/s, "
        f"FFT pair of the DM batch {device.get('fft_pair_ms', float('nan')):.3f} ms"
        + (f"; from `{source}`." if source else ".")
    )
    lines = [
        head,
        "",
        "| case | shape | time [ms] | throughput | bytes moved | achieved GB/s | % of copy bandwidth "
        "| floor [ms] | % of floor | target [ms] | time / target |",
        "|---|---|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['name']} | {r.get('shape', '')} | {r['time_ms']:.3f} | {r.get('throughput', '')} "
            f"| {r['bytes'] / 1e6:.1f} MB | {r['achieved_gb_per_s']:.2f} | "
            f"{100 * r['bandwidth_fraction']:.2f} "
            f"| {r['floor_ms']:.3f} | {100 * r['fraction_of_floor']:.2f} | {_fmt(r.get('target_ms'), 'g')} "
            f"| {_fmt(r.get('ratio_to_target'), '.2f')} |"
        )
    lines += [
        "",
        "Floor: the bytes at the measured copy bandwidth plus, for a DM iteration, two FFT pairs "
        "of the batch; % of floor = floor / time (100 % = at the measured limit). Block matching "
        "and kNN are compute-bound: their bytes are the compulsory input and output only.",
    ]
    return "\n".join(lines) + "\n"


def plot(device: dict, rows: list[dict], out) -> pathlib.Path:
    """Write the two-panel roofline PNG; returns its path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    names = [r["name"] for r in rows]
    colours = ["tab:blue" if n.endswith("(kernel)") else "tab:gray" for n in names]
    y = list(range(len(rows)))[::-1]
    bw = device.get("copy_bandwidth_gb_per_s")
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(13, 0.55 * len(rows) + 2.2), sharey=True)
    gbps = [max(r["achieved_gb_per_s"], 1e-6) for r in rows]
    ax1.barh(y, gbps, color=colours)
    if bw:
        ax1.axvline(bw, color="k", ls="--", lw=1)
        ax1.text(bw, len(rows) - 0.4, f" copy {bw:.0f} GB/s", va="bottom", ha="right", fontsize=8)
    ax1.set_xscale("log")
    ax1.set_xlabel("achieved GB/s (bytes that must move / time)")
    ax1.set_yticks(y)
    ax1.set_yticklabels([f"{r['name']}\n{r.get('shape', '')}" for r in rows], fontsize=8)
    frac = [max(100 * r["fraction_of_floor"], 1e-4) for r in rows]
    ax2.barh(y, frac, color=colours)
    ax2.axvline(100, color="k", ls="--", lw=1)
    ax2.text(100, len(rows) - 0.4, "measured limit ", va="bottom", ha="right", fontsize=8)
    ax2.set_xscale("log")
    ax2.set_xlim(min(frac) / 3, 2e4)  # room for the labels right of the limit
    ax2.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g} %"))
    ax2.set_xlabel("time floor / time (floor: bytes at the copy bandwidth + FFT pairs)")
    for yy, f, r in zip(y, frac, rows):
        label = f" {f:.3g} %, {r['time_ms']:.3g} ms"
        if r.get("ratio_to_target") is not None:
            label += f", {r['ratio_to_target']:.2f}x target ({r['target_ms']:g} ms)"
        ax2.text(max(f, 130.0), yy, label, va="center", fontsize=8)
    title = f"{device.get('device')}"
    if device.get("driver"):
        title += f", driver {device['driver']}, SM {device.get('sm_clock_mhz')} MHz"
    fig.suptitle(
        f"Hot paths against the measured limits: {title}  (blue: CUDA kernels, grey: NumPy/CuPy twins)",
        fontsize=10,
    )
    fig.tight_layout()
    out = pathlib.Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.stem + ".tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(out)
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("json", help="output of `xstereo bench --json` (or a pytest-benchmark JSON)")
    p.add_argument("-o", "--output", help="PNG to write (default: <stem>_roofline.png next to the input)")
    p.add_argument("--md", help="Markdown table to write (default: <stem>_roofline.md next to the input)")
    args = p.parse_args(argv)
    src = pathlib.Path(args.json)
    device, rows = load_rows(src)
    png = plot(device, rows, args.output or src.with_name(src.stem + "_roofline.png"))
    md = pathlib.Path(args.md or src.with_name(src.stem + "_roofline.md"))
    tmp = md.with_name(md.name + ".tmp")
    tmp.write_text(markdown_table(device, rows, src.name))
    tmp.replace(md)
    print(f"wrote {png} and {md}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
