import os
from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(autouse=True)
def _isolated_data_dir(tmp_path_factory, monkeypatch):
    """Corpora prepared by tests go to one per-session temp dir, never the user's cache."""
    if "LAB_DATA_DIR" not in os.environ or os.environ.get("LAB_TEST_SHARED_CACHE") != "1":
        root = tmp_path_factory.getbasetemp() / "lab-data"
        monkeypatch.setenv("LAB_DATA_DIR", str(root))
