"""Array-module choice (NumPy or CuPy), transfers and device facts.

Rules (DESIGN.md section 3):

* CuPy is usable when it imports *and* ``cupy.cuda.is_available()`` is true; CuPy imports fine on
  machines without a GPU, so the import alone proves nothing.
* ``XSTEREO_BACKEND=numpy|cupy`` overrides the automatic choice.
* Library functions take their module from their input with :func:`get_array_module`; nothing here
  keeps global state beyond a cached probe, and CuPy is imported lazily.
* :func:`scipy_module` gives the SciPy counterpart of that module (``scipy.<name>`` or
  ``cupyx.scipy.<name>``), :func:`use_kernels` whether the custom CUDA kernels run
  (``XSTEREO_KERNELS=0|1``), and :func:`fits_int32` whether sizes fit the kernels' 32-bit indices.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import os
import platform
from types import ModuleType
from typing import Any

import numpy as np

from .errors import InputError

__all__ = [
    "cupy_available",
    "select_backend",
    "get_array_module",
    "scipy_module",
    "use_kernels",
    "fits_int32",
    "INT32_MAX",
    "to_host",
    "to_device",
    "synchronize",
    "device_info",
    "fft_workers",
]


@functools.lru_cache(maxsize=1)
def cupy_available() -> bool:
    """True when CuPy imports and sees at least one CUDA device (probed once)."""
    if importlib.util.find_spec("cupy") is None:
        return False
    try:
        import cupy

        return bool(cupy.cuda.is_available())
    except Exception:  # driver missing, CUDA runtime mismatch, ...
        return False


def select_backend(name: str | None = None) -> ModuleType:
    """Return the array module to compute with.

    Parameters
    ----------
    name : {"auto", "numpy", "cupy"}, optional
        Explicit choice. ``None`` reads ``XSTEREO_BACKEND`` and falls back to ``"auto"``:
        CuPy when usable, else NumPy.
    """
    name = (name or os.environ.get("XSTEREO_BACKEND") or "auto").lower()
    if name == "numpy":
        return np
    if name == "cupy":
        if not cupy_available():
            raise InputError(
                "backend", "'cupy' requested", "a CUDA device visible to CuPy (pip install .[cuda12])"
            )
        import cupy

        return cupy
    if name == "auto":
        if cupy_available():
            import cupy

            return cupy
        return np
    raise InputError("backend", repr(name), "one of 'auto', 'numpy', 'cupy'")


def get_array_module(*arrays: Any) -> ModuleType:
    """The module (``numpy`` or ``cupy``) that owns ``arrays``; works without CuPy installed."""
    for a in arrays:
        mod = type(a).__module__
        if mod.startswith("cupy"):
            import cupy

            return cupy
    return np


def scipy_module(x: Any, name: str) -> ModuleType:
    """The SciPy submodule ``name`` for the array module of ``x``.

    Parameters
    ----------
    x : array or module
        An array (NumPy or CuPy; anything else counts as NumPy) or an array module (``numpy``,
        ``cupy``).
    name : str
        The submodule: ``"fft"``, ``"ndimage"``, ``"signal"``, ...

    Returns
    -------
    module
        ``scipy.<name>`` for NumPy, ``cupyx.scipy.<name>`` for CuPy (imported on first use).

    See Also
    --------
    get_array_module : the array module of an array.
    """
    xp = x if isinstance(x, ModuleType) else get_array_module(x)
    # importlib looks in sys.modules first: no cache of our own, so that a module swapped there
    # (a test's stand-in for CuPy) is the one returned
    return importlib.import_module(("scipy." if xp is np else "cupyx.scipy.") + name)


def use_kernels(xp: ModuleType, kernels: bool | None = None) -> bool:
    """Whether the custom CUDA kernels run for arrays of module ``xp``.

    Parameters
    ----------
    xp : module
        ``numpy`` or ``cupy``: the module the computation runs with.
    kernels : bool, optional
        An explicit choice wins on CuPy; ``None`` reads the environment variable
        ``XSTEREO_KERNELS`` (``1``/unset: use the kernels, ``0``: run the NumPy twins' array code
        on CuPy too). Call it once per entry point and pass the answer on.

    Returns
    -------
    bool
        False on NumPy (the CPU path is always the twins; the environment is not read).

    Raises
    ------
    InputError
        ``XSTEREO_KERNELS`` holds something other than 0/1 (or false/true, no/yes, off/on).
    """
    if xp is np:
        return False
    if kernels is not None:
        return bool(kernels)
    value = os.environ.get("XSTEREO_KERNELS", "1").strip().lower()
    if value in ("1", "true", "yes", "on", ""):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise InputError(
        "XSTEREO_KERNELS", repr(value), "1 (use the CUDA kernels on CuPy) or 0 (the twins' array code)"
    )


#: Largest index of the kernels' 32-bit ``int`` arithmetic.
INT32_MAX = 2**31 - 1


def fits_int32(*sizes: int) -> bool:
    """True when every size (an element count or index bound the kernel computes) is at most ``INT32_MAX``.

    Parameters
    ----------
    *sizes : int
        The largest values a kernel's ``int`` indices take, e.g. ``N * N`` or ``2 * H * W``.

    Returns
    -------
    bool
    """
    return all(int(s) <= INT32_MAX for s in sizes)


def to_host(x: Any) -> Any:
    """Copy a CuPy array to NumPy (NumPy arrays and scalars pass through)."""
    if type(x).__module__.startswith("cupy"):
        return x.get()
    return x


def to_device(x: Any, xp: ModuleType) -> Any:
    """Put ``x`` on the device of module ``xp`` (no copy when it is already there)."""
    if xp is np:
        return np.asarray(to_host(x))
    return xp.asarray(x)


def synchronize(xp: ModuleType) -> None:
    """Wait for the device to finish queued work (no-op for NumPy)."""
    if xp is not np:
        xp.cuda.get_current_stream().synchronize()


def fft_workers() -> int:
    """Threads for ``scipy.fft`` on the CPU path (all cores this process may use)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def device_info(xp: ModuleType | None = None) -> dict:
    """Facts about the compute device, for ``xstereo info`` and ``summary.json``.

    Returns a dict with ``backend`` and versions; on CuPy also the GPU name, memory and clocks read
    through pynvml (nvidia-ml-py) when it is installed.
    """
    import scipy

    xp = xp or select_backend()
    info: dict[str, Any] = {
        "backend": "cupy" if xp is not np else "numpy",
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "python": platform.python_version(),
        "host": platform.node(),
        "cpu_threads": fft_workers(),
    }
    if xp is np:
        info["device"] = f"CPU ({fft_workers()} threads), NumPy backend"
        return info
    import cupy

    dev = cupy.cuda.Device()
    props = cupy.cuda.runtime.getDeviceProperties(dev.id)
    name = props["name"].decode() if isinstance(props["name"], bytes) else str(props["name"])
    info.update(
        cupy=cupy.__version__,
        cuda_runtime=cupy.cuda.runtime.runtimeGetVersion(),
        device=name,
        device_id=dev.id,
        memory_total_bytes=int(props["totalGlobalMem"]),
    )
    try:
        import pynvml

        pynvml.nvmlInit()
        try:
            h = pynvml.nvmlDeviceGetHandleByIndex(dev.id)
            mem = pynvml.nvmlDeviceGetMemoryInfo(h)
            drv = pynvml.nvmlSystemGetDriverVersion()
            info.update(
                driver=drv.decode() if isinstance(drv, bytes) else drv,
                memory_used_bytes=int(mem.used),
                sm_clock_mhz=pynvml.nvmlDeviceGetClockInfo(h, pynvml.NVML_CLOCK_SM),
                mem_clock_mhz=pynvml.nvmlDeviceGetClockInfo(h, pynvml.NVML_CLOCK_MEM),
                sm_clock_max_mhz=pynvml.nvmlDeviceGetMaxClockInfo(h, pynvml.NVML_CLOCK_SM),
            )
        finally:
            pynvml.nvmlShutdown()
    except Exception as exc:  # pynvml missing or NVML unavailable: say so, do not fail
        info["nvml"] = f"unavailable ({type(exc).__name__})"
    return info
