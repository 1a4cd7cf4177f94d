import numpy as np
import pytest

from lab.schedules import make_schedule, warmup_policy, wsd_decay_start


def values(kind, **kw):
    f = make_schedule(kind, **kw)
    return np.array([float(f(s)) for s in range(kw["total_steps"])])


def test_wsd_shape():
    lr = values("wsd", peak=1.0, total_steps=100, warmup_steps=10, min_ratio=0.1, decay_frac=0.2)
    np.testing.assert_allclose(lr[:10], np.arange(1, 11) / 10, rtol=1e-6)  # linear warmup
    np.testing.assert_allclose(lr[10:81], 1.0)  # stable until the decay starts at step 80
    assert wsd_decay_start(100, 0.2) == 80
    assert np.all(np.diff(lr[80:]) < 0)  # strictly decaying
    assert lr[-1] == pytest.approx(0.1)


def test_cosine_shape():
    lr = values("cosine", peak=2.0, total_steps=50, warmup_steps=5, min_ratio=0.0)
    assert lr[4] == pytest.approx(2.0)
    assert np.all(np.diff(lr[5:]) <= 1e-7)
    assert lr[-1] == pytest.approx(0.0, abs=1e-6)
    assert lr[(5 + 49) // 2] == pytest.approx(1.0, rel=0.05)  # half way down at the midpoint


def test_wsd_branch_equals_independent_run():
    """A cooldown branch of length S follows the schedule of an independent run of S steps:
    the long run and the short run agree on every step before the short run's decay."""
    long = values("wsd", peak=1.0, total_steps=400, warmup_steps=20, decay_frac=0.2)
    short = values("wsd", peak=1.0, total_steps=100, warmup_steps=20, decay_frac=0.2)
    start = wsd_decay_start(100, 0.2)
    np.testing.assert_array_equal(long[: start + 1], short[: start + 1])


def test_warmup_policy_scales_with_size():
    assert warmup_policy(100_000, 1024, 10_000) == 98  # ceil(N / tokens per step)
    assert warmup_policy(10_000_000, 1024, 1_000) == 250  # capped at a quarter of the run
    assert warmup_policy(10, 1024, 1_000) == 1
