"""Reading images and reading/writing Middlebury ``.flo`` files.

``.flo`` (Baker et al., IJCV 2011): float32 tag 202021.25 ("PIEH"), int32 width, int32 height,
then height x width x 2 float32 (u, v) = (dx, dy) row-major, little-endian. Values above 1e9 mark
unknown flow (NaN here). In ofrnn flows are (2, H, W) arrays (dy, dx): :func:`write_flo` and
:func:`read_flo` do the conversion.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import OfrnnError
from ..files import atomic_write_bytes

_TAG = 202021.25
_UNKNOWN = 1e9


def read_flo(path):
    """Read a Middlebury ``.flo`` file as a (2, H, W) float32 array (dy, dx); unknown -> NaN."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise OfrnnError(e.strerror or str(e), path=path) from None
    if len(raw) < 12 or np.frombuffer(raw[:4], "<f4")[0] != np.float32(_TAG):
        raise OfrnnError("not a .flo file (missing the PIEH tag)", path=path, field="header")
    w, h = (int(x) for x in np.frombuffer(raw[4:12], "<i4"))
    if w <= 0 or h <= 0 or len(raw) != 12 + 8 * w * h:
        raise OfrnnError(f"size {w}x{h} does not match the file length {len(raw)}", path=path, field="header")
    uv = np.frombuffer(raw[12:], "<f4").reshape(h, w, 2).astype(np.float32)
    uv = np.where(np.abs(uv) > _UNKNOWN, np.nan, uv)
    return np.ascontiguousarray(np.stack([uv[..., 1], uv[..., 0]]))


def write_flo(path, flow):
    """Write a (2, H, W) flow (dy, dx) as a Middlebury ``.flo`` file (u = dx, v = dy), atomically;
    NaN is written as the format's unknown value."""
    flow = np.asarray(flow, dtype=np.float32)
    if flow.ndim != 3 or flow.shape[0] != 2:
        raise OfrnnError(f"expected a (2, H, W) flow, got shape {flow.shape}", field="flow")
    _, h, w = flow.shape
    uv = np.stack([flow[1], flow[0]], axis=-1)
    uv = np.where(np.isfinite(uv), uv, np.float32(1e10)).astype("<f4")
    payload = np.array([_TAG], "<f4").tobytes() + np.array([w, h], "<i4").tobytes() + uv.tobytes()
    atomic_write_bytes(path, payload)


def read_image(path):
    """Read a PNG/PPM/PGM/JPEG (OpenCV) or NPY image as a 2-D float32 array; colour -> gray
    (ITU-R BT.601 luma, as OpenCV's cvtColor)."""
    import cv2

    path = Path(path)
    if not path.is_file():
        raise OfrnnError("no such file", path=path)
    if path.suffix.lower() == ".npy":
        try:
            im = np.load(path, allow_pickle=False)
        except (ValueError, OSError) as e:
            raise OfrnnError(f"not a readable .npy array ({e})", path=path) from None
        if im.ndim == 3 and im.shape[-1] in (3, 4):
            im = im[..., :3].astype(np.float64) @ np.array([0.299, 0.587, 0.114])
        field = "array"
    else:
        im = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        if im is None:
            raise OfrnnError("not an image OpenCV can read (PNG, PPM, PGM, JPEG) or .npy", path=path)
        if im.ndim == 3:
            im = cv2.cvtColor(im[..., :3], cv2.COLOR_BGR2GRAY) if im.dtype == np.uint8 else \
                im[..., :3].astype(np.float64) @ np.array([0.114, 0.587, 0.299])
        field = "pixels"
    if im.ndim != 2 or not np.issubdtype(im.dtype, np.number) or np.issubdtype(im.dtype, np.complexfloating):
        raise OfrnnError(f"expected a 2-D gray or RGB image of real numbers, got shape {im.shape} dtype {im.dtype}",
                         path=path, field=field)
    im = im.astype(np.float32)
    if not np.all(np.isfinite(im)):
        raise OfrnnError(f"{int((~np.isfinite(im)).sum())} non-finite value(s) (NaN or inf)", path=path, field=field)
    return im
