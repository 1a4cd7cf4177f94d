import os
import tempfile
from pathlib import Path

import pytest

# One compilation cache for the whole session (subprocesses inherit it): each tiny model shape
# compiles once, not once per test. Never the user's own cache.
os.environ.setdefault("SCALING_LAB_JAX_CACHE", tempfile.mkdtemp(prefix="lab-jax-cache-"))

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(autouse=True)
def _isolated_data_dir(tmp_path_factory, monkeypatch):
    """Corpora prepared by tests go to one per-session temp dir, never the user's cache."""
    if "LAB_DATA_DIR" not in os.environ or os.environ.get("LAB_TEST_SHARED_CACHE") != "1":
        root = tmp_path_factory.getbasetemp() / "lab-data"
        monkeypatch.setenv("LAB_DATA_DIR", str(root))


@pytest.fixture(scope="session")
def reference_run(tmp_path_factory):
    """The tiny config of tests.helpers.runs trained once, uninterrupted, on one device."""
    from lab.training.train import train
    from tests.helpers.runs import TINY

    out = tmp_path_factory.mktemp("ref") / "one_device"
    os.environ.setdefault("LAB_DATA_DIR", str(tmp_path_factory.getbasetemp() / "lab-data"))
    train(TINY, out, progress=False)
    return out
