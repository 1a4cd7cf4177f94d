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


@pytest.mark.parametrize("kind", ["wsd", "cosine", "constant"])
def test_schedule_with_its_numbers_as_arguments_is_bitwise_the_constant_one(kind):
    """Issue 25: the training step takes `schedule_constants` as arguments (one program per shape);
    its rates are those of the schedule with the numbers as constants, bit for bit, for odd
    warmups and spans whose reciprocals are inexact (XLA folds a division by a constant into a
    multiplication by its float32 reciprocal; the runtime formulas multiply by the same one)."""
    import jax
    import jax.numpy as jnp

    from lab.schedules import runtime_schedule, schedule_constants

    traced = jax.jit(runtime_schedule(kind))
    for peak, total, warmup in ((3e-3, 682, 21), (0.0123, 137, 5), (7.7e-4, 20, 0)):
        kw = dict(peak=peak, total_steps=total, warmup_steps=warmup, min_ratio=0.1, decay_frac=0.2)
        steps = jnp.arange(total)
        fixed = np.asarray(jax.jit(make_schedule(kind, **kw))(steps))
        args = {k: jnp.asarray(v) for k, v in schedule_constants(kind, **kw).items()}
        assert np.array_equal(np.asarray(traced(steps, args)).view(np.uint32), fixed.view(np.uint32))
        assert fixed[-1] == pytest.approx(peak * (1.0 if kind == "constant" else 0.1), rel=1e-5)
