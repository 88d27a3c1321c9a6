"""The CUDA sources are found whether xstereo_gpu is installed or imported from a checkout (issue 12, item "
"5)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from xstereo_gpu import _kernels

ROOT = Path(__file__).resolve().parents[1]
NAMES = ("difference_map.cu", "block_matching.cu", "knn_outliers.cu", "sgm.cu")


@pytest.mark.parametrize("name", NAMES)
def test_kernel_source_found(name):
    assert "__global__" in _kernels.kernel_source(name)


def test_falls_back_to_checkout_when_package_missing(monkeypatch):
    real = _kernels.importlib.resources.files

    def files(pkg):
        if pkg == "xstereo_gpu.kernels":
            raise ModuleNotFoundError("No module named 'xstereo_gpu.kernels'")
        return real(pkg)

    monkeypatch.setattr(_kernels.importlib.resources, "files", files)
    if not _kernels.CHECKOUT_KERNELS.is_dir():
        pytest.skip("xstereo_gpu imported from an installed wheel: no checkout next to it")
    for name in NAMES:
        assert _kernels.kernel_source(name) == (_kernels.CHECKOUT_KERNELS / name).read_text()
    with pytest.raises(FileNotFoundError, match="nope.cu"):
        _kernels.kernel_source("nope.cu")


@pytest.mark.skipif(not (ROOT / "kernels" / "sgm.cu").is_file(), reason="not run from a checkout")
def test_uninstalled_checkout_finds_kernels(tmp_path):
    """A fresh interpreter importing xstereo_gpu from the source tree (editable finders removed)."""
    code = textwrap.dedent(f"""
        import sys
        def editable(f):
            names = (getattr(f, "__module__", ""), getattr(f, "__name__", ""), type(f).__module__,
            type(f).__name__)
            return any("editable" in str(n).lower() for n in names)
        sys.meta_path[:] = [f for f in sys.meta_path if not editable(f)]
        sys.path.insert(0, {str(ROOT)!r})
        for k in [k for k in sys.modules if k.startswith("xstereo_gpu")]:
            del sys.modules[k]
        import xstereo_gpu, importlib.util
        assert xstereo_gpu.__file__.startswith({str(ROOT)!r}), xstereo_gpu.__file__
        assert importlib.util.find_spec("xstereo_gpu.kernels") is None
        from xstereo_gpu._kernels import kernel_source
        for n in {NAMES!r}:
            assert "__global__" in kernel_source(n)
        print("ok")
    """)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, env=env)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr
