"""Settings and output files.

Outputs are atomic (a temporary file in the target folder, then a rename), so an interrupted run
never leaves a half-written report, metrics file or figure behind, and leaves no temporary file
either: Ctrl-C and SIGTERM (a batch scheduler's time limit) unwind the write and remove it, and a
temporary file that a killed process (SIGKILL, power loss) left is removed by the next write to the
same target. Settings are TOML, read with one clear error line when missing or malformed.
"""
from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import re
import signal
import socket
import tempfile
import threading
import time
import tomllib
from pathlib import Path

import numpy as np

from .errors import OfrnnError


def content_digest(path, *, digits=16):
    """First ``digits`` hex digits of the SHA-256 of a file's content.

    Outputs name their inputs (a cohort, a model) by this digest, never by path: folder and file
    names of clinical data often hold patient names. About 1 s per GB, once per process and file
    version: the digest is kept for the file's (path, size, modification time).

    Parameters
    ----------
    path : path
        The file.
    digits : int
        Hex digits kept (16 = 64 bits).

    Returns
    -------
    str
    """
    st = Path(path).stat()
    return _sha256(str(Path(path).resolve()), st.st_size, st.st_mtime_ns)[:digits]


@functools.lru_cache(maxsize=64)
def _sha256(path, size, mtime_ns):
    """Hex SHA-256 of a file; ``size`` and ``mtime_ns`` only key the cache (a rewritten file is read again)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def json_default(o):
    """JSON encoder fallback for NumPy scalars and arrays and paths."""
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON-serialisable: {type(o).__name__}")


#: the random part of a ``tempfile.mkstemp`` name
_TEMP_RANDOM = "[a-z0-9_]{8}"
#: a temporary file of another machine (a shared file system) counts as stale after this long
#: without a write: its writer's process cannot be asked
_FOREIGN_STALE_S = 24 * 3600


def _host_tag():
    """Six hex digits naming this machine in temporary file names (a hash: no host name is written)."""
    return hashlib.sha256(socket.gethostname().encode()).hexdigest()[:6]


@contextlib.contextmanager
def atomic_output(path, *, suffix=".tmp"):
    """Yield a temporary path beside ``path``; when the block ends normally, give the file normal
    permissions (0666 less the umask, like any new file; ``mkstemp`` makes 0600) and rename it to
    ``path``. On any exception, interrupts included, the temporary file is removed.

    For writers that need a file name rather than bytes (h5py, Keras ``save``): ``suffix`` keeps the
    extension a library checks (e.g. ``".keras"``). Creates missing parent folders.

    Interruptions: Ctrl-C raises KeyboardInterrupt, and while the block runs SIGTERM raises
    ``SystemExit(143)`` (only where SIGTERM still has its default action and this is the main
    thread; the handler is restored afterwards), so both unwind through the removal. A process
    killed outright leaves its ``.<name>.<host>-<pid>.<8 random characters><suffix>``; the next call
    for the same ``path`` removes it (:func:`remove_stale_temps`).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(path, suffix=suffix)
    with _sigterm_unwinds():
        # the writer's machine and process in the name tell later runs whether it is still at work
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{_host_tag()}-{os.getpid()}.", suffix=suffix,
                                   dir=path.parent)
        os.close(fd)
        try:
            yield Path(tmp)
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp, 0o666 & ~umask)
            os.replace(tmp, path)
        finally:
            Path(tmp).unlink(missing_ok=True)


def remove_stale_temps(path, *, suffix=".tmp"):
    """Remove the temporary files of :func:`atomic_output` for ``path`` whose writer is gone.

    Only names of that exact pattern beside ``path`` are candidates, never another program's files:
    ``.<name>.<host>-<pid>.<8 random characters><suffix>``, stale when the process ``pid`` of this
    machine no longer runs (a file of another machine: after a day without a write), and the
    ``.<name>.<8 random characters><suffix>`` of ofrnn versions before it, which named no writer.
    Returns the number removed.
    """
    path = Path(path)
    name, sfx = re.escape(path.name), re.escape(suffix)
    pattern = re.compile(rf"\.{name}\.(?:([0-9a-f]{{6}})-(\d+)\.)?{_TEMP_RANDOM}{sfx}")
    removed = 0
    for p in path.parent.iterdir():
        m = pattern.fullmatch(p.name)
        if m and _writer_gone(p, m.group(1), m.group(2)):
            p.unlink(missing_ok=True)
            removed += 1
    return removed


def _writer_gone(p, host, pid):
    """Whether the process that made temporary file ``p`` has stopped (see :func:`remove_stale_temps`)."""
    if host is None:
        return True
    if host != _host_tag():
        try:
            return time.time() - p.stat().st_mtime > _FOREIGN_STALE_S
        except FileNotFoundError:
            return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, another user's
        return False
    return False


@contextlib.contextmanager
def _sigterm_unwinds():
    """Turn SIGTERM into ``SystemExit(143)`` inside the block, so ``finally`` clauses run.

    Left alone where another handler is installed (the program decided) or off the main thread
    (Python allows handlers only there).
    """
    if (threading.current_thread() is not threading.main_thread()
            or signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL):
        yield
        return

    def terminate(signum, frame):
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


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


def pyplot():
    """matplotlib.pyplot on the file-only Agg backend (no display needed), for the figure writers."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


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
