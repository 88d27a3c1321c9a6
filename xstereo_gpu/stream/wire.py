"""Karabo bridge messages (protocol 2.2) off the wire, checked, and a train's frames as stereo shots.

A message is a list of ZeroMQ frames in pairs ``(header, payload)``; each header is a msgpack map
``{"source", "content", ...}``: ``content == "msgpack"`` is followed by the source's msgpack map of
scalar properties (and ``metadata`` in the header: ``timestamp.tid`` is the train ID);
``content == "array"`` by the raw bytes of one array, whose ``path`` (key), ``dtype`` and ``shape`` the
header declares. This decoder trusts nothing: a message that is not such pairs, a header that is not
a map, an unknown content, a dtype that is not a plain number type, a declared shape whose bytes differ
from the payload's (a huge declared size allocates nothing) or a message over the size limit raises
:class:`WireError` with the reason, and the stream counts it and goes on.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..errors import InputError
from ..io.cxi import MASK_INVALID
from ..io.xfel import geometry_shot
from ..shot import Shot

__all__ = ["WireError", "decode", "Train", "train_frames", "train_shots", "MAX_DIMS"]

#: Dimensions of a declared array, at most.
MAX_DIMS = 8


class WireError(ValueError):
    """A message the stream cannot use: the reason, for the per-message log line."""


def _buffer(part) -> memoryview:
    return memoryview(getattr(part, "buffer", part))


def _unpack(part, what: str):
    import msgpack

    try:
        return msgpack.unpackb(_buffer(part), raw=False)
    except Exception as exc:  # noqa: BLE001 - any garbage: msgpack raises many kinds
        raise WireError(f"{what}: not msgpack ({type(exc).__name__}: {exc})") from None


def _array(md: dict, payload, where: str) -> tuple[str, np.ndarray]:
    path, dtype, shape = md.get("path"), md.get("dtype"), md.get("shape")
    if not isinstance(path, str):
        raise WireError(f"{where}: array header without a key ('path': {path!r})")
    try:
        dt = np.dtype(dtype) if isinstance(dtype, str) else None
    except (TypeError, ValueError):
        dt = None
    if dt is None or dt.kind not in "biuf" or dt.fields is not None:
        raise WireError(
            f"{where} {path}: dtype {dtype!r}; expected a plain number type (bool, int, uint, float)"
        )
    ok = isinstance(shape, (list, tuple)) and len(shape) <= MAX_DIMS
    ok = ok and all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in shape)
    if not ok:
        raise WireError(f"{where} {path}: shape {shape!r}; expected at most {MAX_DIMS} sizes >= 0")
    declared = math.prod(shape) * dt.itemsize  # Python ints: no overflow, nothing allocated
    buf = _buffer(payload)
    if declared != buf.nbytes:
        raise WireError(
            f"{where} {path}: declared {tuple(shape)} {dt} = {declared} bytes, "
            f"but the payload holds {buf.nbytes}"
        )
    return path, np.frombuffer(buf, dtype=dt).reshape(shape)


def decode(parts, *, max_bytes: int) -> tuple[dict, dict]:
    """A bridge message into ``(data, metadata)``, keyed by source name.

    Parameters
    ----------
    parts : sequence of bytes, memoryview or zmq.Frame
        The message's frames, as received.
    max_bytes : int
        Largest message accepted [bytes] (all frames together).

    Returns
    -------
    data : dict of str to dict
        Per source, its properties: scalars and ``np.ndarray`` (read-only views of the payload).
    metadata : dict of str to dict
        Per source, its header metadata (``timestamp.tid``, ...).

    Raises
    ------
    WireError
        Not a protocol 2.2 message, or one that breaks its rules (see the module's text).
    """
    parts = list(parts)
    total = sum(_buffer(p).nbytes for p in parts)
    if total > max_bytes:
        raise WireError(f"{total} bytes; expected at most {max_bytes} (--max-message-mb)")
    if len(parts) < 2 or len(parts) % 2:
        raise WireError(f"{len(parts)} frames; expected (header, payload) pairs (bridge protocol 2.2)")
    data: dict = {}
    meta: dict = {}
    for k in range(0, len(parts), 2):
        where = f"frame {k}"
        md = _unpack(parts[k], f"{where} (header)")
        if not isinstance(md, dict) or not isinstance(md.get("source"), str):
            raise WireError(f"{where}: header {str(md)[:80]!r}; expected a map with a 'source' name")
        src, content = md["source"], md.get("content")
        if content == "msgpack":
            props = _unpack(parts[k + 1], f"{where} ({src} properties)")
            if not isinstance(props, dict):
                raise WireError(f"{where}: {src} properties are {type(props).__name__}; expected a map")
            data[src] = props
            m = md.get("metadata", {})
            meta[src] = m if isinstance(m, dict) else {}
        elif content == "array":
            if src not in data:
                raise WireError(f"{where}: an array of {src!r} before its properties")
            path, arr = _array(md, parts[k + 1], f"{where} {src}")
            data[src][path] = arr
        else:
            raise WireError(f"{where}: content {content!r}; expected 'msgpack' or 'array'")
    return data, meta


@dataclass
class Train:
    """The detector frames of one train.

    Attributes
    ----------
    train_id : int or None
        ``timestamp.tid`` of the source's metadata (None when the message has none).
    frames : (P, H, W) ndarray
        One frame per shot (P = 1 for a camera, the pulses of a pulse-resolved detector module).
    mask : (P, H, W) ndarray or None
        The source's ``<group>.mask`` beside ``<group>.data`` (non-zero = bad pixel), when sent.
    """

    train_id: int | None
    frames: np.ndarray
    mask: np.ndarray | None


def _train_id(meta: dict, props: dict) -> int | None:
    for m in (meta, props.get("metadata") if isinstance(props.get("metadata"), dict) else {}):
        tid = m.get("timestamp.tid") if isinstance(m, dict) else None
        if isinstance(tid, int) and not isinstance(tid, bool) and tid >= 0:
            return tid
    return None


def train_frames(data: dict, meta: dict, source: str, key: str) -> Train:
    """The frames of ``source``/``key`` in a decoded train.

    A frame entry is one 2D image ``(H, W)``, or ``(P, H, W)`` with one image per pulse (``(1, H, W)``:
    one frame), of integer or floating-point intensities.

    Raises
    ------
    WireError
        The source or key missing (the ones sent are listed), not an array, not 2D/3D, not numbers.
    """
    if source not in data:
        raise WireError(f"no source {source!r} in the train; it holds {sorted(data)[:8]}")
    props = data[source]
    if key not in props:
        arrays = sorted(k for k, v in props.items() if isinstance(v, np.ndarray))
        raise WireError(f"{source}: no key {key!r}; its arrays are {arrays[:8]}")
    arr = props[key]
    if not isinstance(arr, np.ndarray) or arr.ndim not in (2, 3) or arr.dtype.kind not in "iuf":
        what = f"{arr.dtype} {arr.shape}" if isinstance(arr, np.ndarray) else type(arr).__name__
        raise WireError(
            f"{source} {key}: {what}; expected frames (H, W) or (pulses, H, W) "
            "of integer or float intensities"
        )
    frames = arr[None] if arr.ndim == 2 else arr
    if frames.shape[0] == 0 or min(frames.shape[1:]) < 2:
        raise WireError(f"{source} {key}: frames of shape {arr.shape}; expected at least one 2D image")
    mask = None
    group, _, leaf = key.rpartition(".")
    other = props.get(f"{group}.mask" if group else "mask") if leaf == "data" else None
    if isinstance(other, np.ndarray) and other.shape == arr.shape:
        mask = other[None] if other.ndim == 2 else other
    return Train(_train_id(meta.get(source, {}), props), frames, mask)


def train_shots(
    train: Train, geometry: dict, where: str, message: int
) -> list[tuple[str, Shot | InputError, dict]]:
    """One stereo shot per frame of ``train``, built as :func:`~xstereo_gpu.io.xfel.read_xfel_shot` builds it.

    Parameters
    ----------
    train : Train
        From :func:`train_frames`.
    geometry : dict
        :func:`~xstereo_gpu.io.xfel.xfel_geometry`'s result.
    where : str
        The source endpoint, the start of each label.
    message : int
        The message's number in the stream (counted from 0), in the label of a train without ID.

    Returns
    -------
    list of (label, Shot or InputError, extra)
        ``<where>:train <tid>`` (``... pulse <p>`` when the train holds several frames;
        ``<where>:message <n>`` for a train without ID). The shot is validated
        (:meth:`~xstereo_gpu.shot.Shot.validate`): a frame it refuses (NaN, constant) comes as the
        ``InputError``, and its record is ``failed`` as in a batch run.

    Raises
    ------
    WireError
        The frames cannot hold the geometry's pattern centres (a wrong shape).
    """
    p, h, w = train.frames.shape
    c = np.asarray(geometry["centres_px"], dtype=np.float64)
    if not (np.all(c[:, 0] >= 0) and np.all(c[:, 0] < h) and np.all(c[:, 1] >= 0) and np.all(c[:, 1] < w)):
        raise WireError(f"frames of shape {(h, w)}: the pattern centres {c.tolist()} lie outside")
    tid = train.train_id
    name = f"train {tid}" if tid is not None else f"message {message}"
    out = []
    for k in range(p):
        label = f"{where}:{name}" + (f" pulse {k}" if p > 1 else "")
        extra = {"train_id": tid, "pulse": k}
        mask = np.zeros((h, w), dtype=np.uint32)
        if train.mask is not None:
            mask[train.mask[k] != 0] = MASK_INVALID
        shot = geometry_shot(train.frames[k], mask, geometry, label=label, extra=extra)
        try:
            out.append((label, shot.validate(), extra))
        except InputError as exc:
            out.append((label, exc, extra))
    return out
