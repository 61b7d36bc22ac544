"""Shared fixtures, and helpers the test modules import (``from conftest import cli``)."""
from pathlib import Path

import h5py
import numpy as np
import pytest

#: real public data beside the repository (read-only; see ../shared/data/MANIFEST.md)
SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data():
    """The shared real-data folder, or skip the test when this machine has none."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real public data not found at {SHARED_DATA}")
    return SHARED_DATA


def cli(kind, capsys, *argv):
    """``ofrnn ingest <kind> ARGV...``: the exit code, stdout and stderr."""
    from ofrnn.cli import main

    rc = main(["ingest", kind, *map(str, argv)])
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


def strings_in_cohort(path):
    """Every string an HDF5 file holds: object names, attribute names and values (element by element,
    at the root, groups and datasets) and the elements of string datasets."""
    found = []

    def text(x):
        return x.decode(errors="backslashreplace") if isinstance(x, bytes) else str(x)

    def visit(name, obj):
        if name:
            found.append(name)
        for k, v in obj.attrs.items():
            found.append(k)
            found.extend(text(x) for x in np.atleast_1d(v).ravel())
        if isinstance(obj, h5py.Dataset) and obj.dtype.kind in "OSU":
            found.extend(text(x) for x in np.atleast_1d(obj[()]).ravel())

    with h5py.File(path, "r") as f:
        visit("", f)
        f.visititems(visit)
    return found


def assert_private(path, values, *texts, cohort_only=()):
    """No ``values`` in the cohort (names, attributes, string data, bytes) nor in ``texts``; no
    ``cohort_only`` (input paths and file names, which the terminal may show) in the cohort."""
    hay = "\n".join(strings_in_cohort(path))
    raw = Path(path).read_bytes()
    for v in list(values) + list(cohort_only):
        assert v not in hay, v
        assert v.encode() not in raw, v
    for v in values:
        for t in texts:
            assert v not in t, v
