"""``cupy.RawModule`` / ``RawKernel`` of the stand-in: the CUDA source compiled as C++ with the shim.

The source (with whatever preamble the binding passes) is written to a ``.cpp`` after
``tests/emulation/cuda_shim.h``, with ``extern __shared__ T name[];`` rewritten into a pointer to the
launch's dynamic shared memory, plus one generated ``extern "C"`` launcher per kernel (the
``extern "C"`` kernels of the source and the ``name_expressions``). It is compiled by ``$CXX``
(default g++) into a shared library cached by content hash in ``$XS_EMU_CACHE`` (default: a
per-user temporary folder). ``XS_EMU_SANITIZE`` = ``thread`` or ``address`` builds with
``-fsanitize=thread`` resp. ``-fsanitize=address,undefined`` (the process must then have the
sanitizer runtime preloaded: see tests/emulation/harness.py).

A kernel call ``kernel(grid, block, args, shared_mem=0)`` marshals the arguments as CUDA does
(a device array: its data pointer; a NumPy scalar: its bytes; a Python int / float / bool: int64 /
float64 / bool, as CuPy does) and the launcher checks their number, sizes and kinds against the
kernel's C++ signature before running it.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import re
import subprocess
import tempfile
import threading
from pathlib import Path

import numpy as np

from ._core import ndarray

SHIM = Path(__file__).resolve().parents[2] / "cuda_shim.h"

#: Every launch of this process: (kernel name, grid, block, shared_mem).
LAUNCHES: list = []

_LOCK = threading.Lock()
_LIBS: dict = {}

_EXTERN_C = re.compile(
    r'extern\s+"C"\s+__global__\s+(?:void\s+)?(?:__launch_bounds__\s*\([^)]*\)\s*)?'
    r"(?:void\s+)?(?:__launch_bounds__\s*\([^)]*\)\s*)?(\w+)\s*\("
)
_EXTERN_SHARED = re.compile(
    r"extern\s+__shared__\s+(?:__align__\s*\(\s*\d+\s*\)\s*)?([A-Za-z_][\w:<>\s]*?)\s+"
    r"(\w+)\s*\[\s*\]\s*;"
)


def sanitize_mode() -> str:
    return os.environ.get("XS_EMU_SANITIZE", "").strip().lower()


def cache_dir() -> Path:
    d = os.environ.get("XS_EMU_CACHE") or os.path.join(tempfile.gettempdir(), f"xs-emu-{os.getuid()}")
    Path(d).mkdir(parents=True, exist_ok=True)
    return Path(d)


def compiler() -> str:
    return os.environ.get("CXX") or "g++"


def flags(mode: str) -> list[str]:
    base = [
        "-std=c++17",
        "-fPIC",
        "-shared",
        "-pthread",
        "-ffp-contract=off",
        "-fno-fast-math",
        "-fno-omit-frame-pointer",
        "-g",
        "-w",
    ]
    if mode == "":
        return base + ["-O1"]
    if mode == "thread":
        return base + ["-O1", "-fsanitize=thread"]
    if mode == "address":
        return base + [
            "-O1",
            "-fsanitize=address,undefined",
            "-fno-sanitize-recover=all",
            "-fno-sanitize=vptr",
        ]
    raise ValueError(f"XS_EMU_SANITIZE={mode!r}: expected '', 'thread' or 'address'")


def translate(code: str, kernels: list[str]) -> str:
    """C++ translation unit for ``code`` with one launcher ``xs_launch_<i>`` per kernel expression."""
    body = _EXTERN_SHARED.sub(
        lambda m: f"{m.group(1)}* {m.group(2)} = ({m.group(1)}*)::xs::dynamic_smem();", code
    )
    out = [f'#include "{SHIM}"', '#line 1 "kernel.cu"', body, "", "// ---- launchers (generated)"]
    for i, k in enumerate(kernels):
        out.append(
            f'extern "C" int xs_launch_{i}(const unsigned* g, const unsigned* b, unsigned long long sh, '
            f"void** a, const long long* sz, const int* kd, int n, double to, char* e, int el) "
            f"{{ return ::xs::launch(&{k}, g, b, sh, a, sz, kd, n, to, e, el); }}"
        )
    return "\n".join(out) + "\n"


def build(code: str, kernels: list[str], mode: str | None = None) -> Path:
    mode = sanitize_mode() if mode is None else mode
    src = translate(code, kernels)
    cmd = [compiler()] + flags(mode)
    key = hashlib.sha256("\0".join([src, SHIM.read_text(), " ".join(cmd)]).encode()).hexdigest()[:24]
    d = cache_dir()
    so = d / f"k_{key}{('_' + mode) if mode else ''}.so"
    if so.exists():
        return so
    cpp = d / f"k_{key}.cpp"
    cpp.write_text(src)
    tmp = d / f".{so.name}.{os.getpid()}.tmp"
    r = subprocess.run(cmd + [str(cpp), "-o", str(tmp)], capture_output=True, text=True)
    if r.returncode:
        raise RuntimeError(
            f"fake cupy: compiling the kernel as C++ failed ({' '.join(cmd)} {cpp}):\n{r.stderr[-6000:]}"
        )
    os.replace(tmp, so)
    return so


def _load(so: Path):
    with _LOCK:
        lib = _LIBS.get(so)
        if lib is None:
            lib = _LIBS[so] = ctypes.CDLL(str(so))
        return lib


class RawKernel:
    def __init__(self, module: RawModule, name: str, index: int):
        self.module, self.name, self._index = module, name, index
        self._fn = getattr(module._lib, f"xs_launch_{index}")
        self._fn.restype = ctypes.c_int
        self._fn.argtypes = [
            ctypes.c_void_p,
            ctypes.c_void_p,
            ctypes.c_ulonglong,
            ctypes.c_void_p,
            ctypes.c_void_p,
            ctypes.c_void_p,
            ctypes.c_int,
            ctypes.c_double,
            ctypes.c_char_p,
            ctypes.c_int,
        ]

    def __call__(self, grid, block, args, *, shared_mem=0, stream=None, enable_cooperative_groups=False):
        grid = tuple(int(v) for v in (grid if isinstance(grid, tuple) else tuple(grid))) + (1, 1, 1)
        block = tuple(int(v) for v in (block if isinstance(block, tuple) else tuple(block))) + (1, 1, 1)
        grid, block = grid[:3], block[:3]
        keep, ptrs, sizes, kinds = [], [], [], []
        for i, a in enumerate(args):
            if isinstance(a, ndarray):
                v = ctypes.c_void_p(a._a.ctypes.data if a.size else 0)
                keep.append(v)
                ptrs.append(ctypes.cast(ctypes.pointer(v), ctypes.c_void_p))
                sizes.append(a.itemsize)
                kinds.append(0)
                continue
            if isinstance(a, np.ndarray):
                raise TypeError(
                    f"{self.name}: argument {i} is a NumPy array (unsupported type: numpy.ndarray)"
                )
            if isinstance(a, (bool, np.bool_)):
                s = np.bool_(a)
            elif isinstance(a, int):
                s = np.int64(a)
            elif isinstance(a, float):
                s = np.float64(a)
            elif isinstance(a, complex):
                s = np.complex128(a)
            elif isinstance(a, np.generic):
                s = a
            else:
                raise TypeError(f"{self.name}: unsupported argument {i} of type {type(a).__name__}")
            buf = ctypes.create_string_buffer(s.tobytes(), max(s.nbytes, 1))
            keep.append(buf)
            ptrs.append(ctypes.cast(buf, ctypes.c_void_p))
            sizes.append(s.nbytes)
            kinds.append(1)
        n = len(ptrs)
        argv = (ctypes.c_void_p * max(n, 1))(*ptrs)
        sz = (ctypes.c_longlong * max(n, 1))(*sizes)
        kd = (ctypes.c_int * max(n, 1))(*kinds)
        g = (ctypes.c_uint * 3)(*grid)
        b = (ctypes.c_uint * 3)(*block)
        err = ctypes.create_string_buffer(4096)
        timeout = float(os.environ.get("XS_EMU_TIMEOUT", "120"))
        LAUNCHES.append((self.name, grid, block, int(shared_mem)))
        rc = self._fn(g, b, int(shared_mem), argv, sz, kd, n, timeout, err, len(err))
        if rc:
            raise RuntimeError(
                f"emulated launch of {self.name} grid={grid} block={block} "
                f"shared_mem={shared_mem} failed: {err.value.decode(errors='replace')}"
            )


class RawModule:
    def __init__(
        self,
        code=None,
        *,
        path=None,
        options=(),
        backend="nvrtc",
        translate_cucomplex=False,
        enable_cooperative_groups=False,
        name_expressions=None,
        jitify=False,
    ):
        if code is None:
            raise NotImplementedError("fake cupy: RawModule(path=...) is not emulated")
        opts = tuple(options or ())
        for o in opts:
            if o not in ("-std=c++17", "-std=c++14", "-std=c++11"):
                raise NotImplementedError(f"fake cupy: NVRTC option {o!r} not emulated")
        self.code = code
        self.options = opts
        self.name_expressions = tuple(name_expressions or ())
        self._c_names = _EXTERN_C.findall(code)
        self._kernels = list(self._c_names) + [e for e in self.name_expressions if e not in self._c_names]
        self.path = build(code, self._kernels)
        self._lib = _load(self.path)

    def get_function(self, name: str) -> RawKernel:
        if name not in self._kernels:
            raise KeyError(
                f'fake cupy: {name!r} is neither an extern "C" kernel of the source nor one of '
                f"the name_expressions {self.name_expressions}"
            )
        return RawKernel(self, name, self._kernels.index(name))
