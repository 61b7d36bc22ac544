"""Atomic output files: write to a temporary file in the target folder, then rename.

An interrupted run never leaves a half-written report, metrics file or figure behind.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import numpy as np


def json_default(o):
    """JSON encoder fallback for NumPy scalars and arrays and paths."""
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON-serialisable: {type(o).__name__}")


def atomic_write_bytes(path, data: bytes):
    """Write ``data`` to ``path`` atomically (same-folder temporary file, then rename)."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path, text: str):
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    atomic_write_bytes(path, text.encode())


def _strict(o):
    """NaN and infinities are not JSON: they become null."""
    if isinstance(o, dict):
        return {k: _strict(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_strict(v) for v in o]
    if isinstance(o, (float, np.floating)) and not np.isfinite(o):
        return None
    if isinstance(o, np.ndarray):
        return _strict(o.tolist())
    return o


def write_json(path, obj, *, indent=1):
    """Write ``obj`` as strict JSON atomically: NumPy values become plain numbers and lists, NaN null."""
    atomic_write_text(path, json.dumps(_strict(obj), indent=indent, default=json_default, allow_nan=False))
