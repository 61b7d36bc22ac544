"""Settings and output files.

Outputs are atomic (a temporary file in the target folder, then a rename), so an interrupted run
never leaves a half-written report, metrics file or figure behind. Settings are TOML, read with
one clear error line when missing or malformed.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
import tomllib
from pathlib import Path

import numpy as np

from .errors import OfrnnError


def content_digest(path, *, digits=16):
    """First ``digits`` hex digits of the SHA-256 of a file's content.

    Outputs name their inputs (a cohort, a model) by this digest, never by path: folder and file
    names of clinical data often hold patient names. About 1 s per GB.
    """
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()[:digits]


def json_default(o):
    """JSON encoder fallback for NumPy scalars and arrays and paths."""
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON-serialisable: {type(o).__name__}")


@contextlib.contextmanager
def atomic_output(path, *, suffix=".tmp"):
    """Yield a temporary path beside ``path``; when the block ends normally, give the file normal
    permissions (0666 less the umask, like any new file; ``mkstemp`` makes 0600) and rename it to
    ``path``. On any exception, interrupts included, the temporary file is removed.

    For writers that need a file name rather than bytes (h5py, Keras ``save``): ``suffix`` keeps the
    extension a library checks (e.g. ``".keras"``). Creates missing parent folders.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


def atomic_write_bytes(path, data: bytes):
    """Write ``data`` to ``path`` atomically (same-folder temporary file, then rename); creates
    missing parent folders."""
    with atomic_output(path) as tmp:
        tmp.write_bytes(data)


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


def write_json(path, obj, *, indent=1, nan_as_null=False):
    """Write ``obj`` as JSON atomically; NumPy values become plain numbers and lists.

    NaN and infinities are written as Python's ``NaN``/``Infinity`` (read back as floats by
    ``json.load``) unless ``nan_as_null``, which gives strict JSON for other tools.
    """
    if nan_as_null:
        text = json.dumps(_strict(obj), indent=indent, default=json_default, allow_nan=False)
    else:
        text = json.dumps(obj, indent=indent, default=json_default)
    atomic_write_text(path, text)


def save_figure(fig, path, **savefig_kw):
    """Save a matplotlib figure atomically (rendered in memory, then written and renamed)."""
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format=Path(path).suffix.lstrip(".") or "png", **savefig_kw)
    atomic_write_bytes(path, buf.getvalue())


def read_toml(path, *, what="settings file"):
    """Parse a TOML file; a missing or malformed file is a user error naming the file."""
    path = Path(path)
    try:
        return tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise OfrnnError(f"no such {what}", path=path) from None
    except tomllib.TOMLDecodeError as e:
        raise OfrnnError(f"invalid TOML ({e})", path=path) from None
