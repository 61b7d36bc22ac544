"""Shared fixtures."""
from pathlib import Path

import pytest

#: real public data beside the repository (read-only; see ../shared/data/MANIFEST.md)
SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data():
    """The shared real-data folder, or skip the test when this machine has none."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real public data not found at {SHARED_DATA}")
    return SHARED_DATA
