"""Signal injection: exact realised S/(S+B), reproducible keys, checked requests, vmap over realisations."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gbijax.data import (
    SIGNAL,
    Events,
    SignalRegion,
    inject_signal,
    injection_mask,
    make_events,
    signal_count_for_mu,
    signal_region_mask,
)


def _events(mjj, label, seed):
    rng = np.random.default_rng(seed)
    n = len(mjj)
    feats = np.column_stack(
        [mjj, rng.uniform(0.02, 0.5, n), rng.uniform(0.0, 0.5, n), rng.uniform(0, 1, (n, 2))]
    )
    return make_events(feats, np.full(n, label))


BKG = _events(np.random.default_rng(0).uniform(2.5, 6.0, 4_000), 0, 1)
POOL = _events(np.random.default_rng(2).normal(3.5, 0.2, 600), 1, 3)
B_SR = int(((BKG.mjj > 3.3) & (BKG.mjj < 3.7)).sum())
P_SR = int(((POOL.mjj > 3.3) & (POOL.mjj < 3.7)).sum())
P_SB = POOL.n - P_SR


def _realised(inj):
    """S/(S+B) in the SR recomputed from the returned events alone, and the injected counts."""
    ev = inj.events
    in_sr = np.asarray(signal_region_mask(ev.mjj))
    sig = ev.label == SIGNAL
    s_sr = ev.weight[sig & in_sr].sum()
    b_sr = ev.weight[~sig & in_sr].sum()
    return s_sr / (s_sr + b_sr), int(s_sr), int(ev.weight[sig & ~in_sr].sum())


def test_sample_sizes():
    assert B_SR > 400 and P_SR > 350 and P_SB > 100  # the arithmetic below relies on a populated SR


@pytest.mark.parametrize("mu", [0.0, 0.001, 0.01, 0.05, 0.2])
def test_mu_mode_gives_the_requested_signal_fraction(mu):
    inj = inject_signal(jax.random.key(0), BKG, POOL, mu=mu)
    n_sr = round(mu * B_SR / (1 - mu))
    n_sb = round(n_sr * P_SB / P_SR)
    assert (inj.n_signal_sr, inj.n_signal, inj.n_background_sr) == (n_sr, n_sr + n_sb, B_SR)
    realised, s_sr, s_sb = _realised(inj)
    assert (s_sr, s_sb) == (n_sr, n_sb)
    assert realised == pytest.approx(inj.mu, rel=1e-12)
    assert abs(realised - mu) <= 0.5 / (B_SR + n_sr)  # rounding to whole events only
    # background first, untouched; then the whole pool with 0/1 weights
    ev = inj.events
    assert ev.n == BKG.n + POOL.n
    np.testing.assert_array_equal(ev.features, np.concatenate([BKG.features, POOL.features]))
    np.testing.assert_array_equal(ev.weight[: BKG.n], BKG.weight)
    assert set(np.unique(ev.weight[BKG.n :])) <= {0.0, 1.0}


def test_background_weights_count():
    """B is the weighted background in the SR: masking half of it halves the injected signal."""
    in_sr = np.asarray(signal_region_mask(BKG.mjj))
    weight = np.where(in_sr & (np.cumsum(in_sr) % 2 == 0), 0.0, 1.0)
    half = Events(BKG.features, BKG.label, weight)
    inj = inject_signal(jax.random.key(0), half, POOL, mu=0.05)
    b = weight[in_sr].sum()
    assert inj.n_background_sr == b
    assert inj.n_signal_sr == round(0.05 * b / 0.95)
    assert _realised(inj)[0] == pytest.approx(0.05, abs=0.5 / b)


def test_same_key_same_events_different_keys_different_events():
    a = inject_signal(jax.random.key(1), BKG, POOL, mu=0.05)
    b = inject_signal(jax.random.key(1), BKG, POOL, mu=0.05)
    c = inject_signal(jax.random.key(2), BKG, POOL, mu=0.05)
    np.testing.assert_array_equal(a.events.weight, b.events.weight)
    assert not np.array_equal(a.events.weight, c.events.weight)
    assert a.events.weight.sum() == c.events.weight.sum()


def test_n_signal_mode():
    inj = inject_signal(jax.random.key(3), BKG, POOL, n_signal=40)
    n_sr = round(40 * P_SR / POOL.n)
    assert (inj.n_signal, inj.n_signal_sr) == (40, n_sr)
    _, s_sr, s_sb = _realised(inj)
    assert (s_sr, s_sb) == (n_sr, 40 - n_sr)
    assert inj.mu == pytest.approx(n_sr / (n_sr + B_SR))
    everything = inject_signal(jax.random.key(3), BKG, POOL, n_signal=POOL.n)
    assert everything.events.weight[BKG.n :].sum() == POOL.n
    assert inject_signal(jax.random.key(3), BKG, POOL, n_signal=0).n_signal == 0


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(mu=-0.01), r"mu = S/\(S\+B\) must be in \[0, 1\)"),
        (dict(mu=1.0), r"must be in \[0, 1\)"),
        (dict(mu=float("nan")), r"must be in \[0, 1\)"),
        (dict(mu=0.9), "more signal requested than available"),
        (dict(n_signal=601), "requested 601 signal events but the signal pool holds 600"),
        (dict(n_signal=-1), "non-negative integer"),
        (dict(n_signal=2.5), "non-negative integer"),
        (dict(), "exactly one of mu or n_signal"),
        (dict(mu=0.1, n_signal=3), "exactly one of mu or n_signal"),
    ],
)
def test_bad_requests_raise(kwargs, message):
    with pytest.raises(ValueError, match=message):
        inject_signal(jax.random.key(0), BKG, POOL, **kwargs)


def test_more_signal_than_the_pool_in_one_region_raises():
    sr_only = Events(*(a[np.asarray(signal_region_mask(POOL.mjj))] for a in POOL))
    # mu mode needs signal-region pool events; the pool's own mjj shape then asks for no sideband ones
    mu_max = sr_only.n / (sr_only.n + B_SR)
    assert inject_signal(jax.random.key(0), BKG, sr_only, mu=mu_max * 0.99).n_signal_sr < sr_only.n
    with pytest.raises(ValueError, match=f"pool holds {sr_only.n} and 0"):
        inject_signal(jax.random.key(0), BKG, sr_only, mu=min(2 * mu_max, 0.95))


def test_empty_signal_region_raises():
    sb_only = _events(np.random.default_rng(5).uniform(4.0, 6.0, 100), 0, 6)
    with pytest.raises(ValueError, match="empty signal region"):
        inject_signal(jax.random.key(0), sb_only, POOL, mu=0.01)
    with pytest.raises(ValueError, match="empty signal region"):
        inject_signal(jax.random.key(0), BKG, POOL, mu=0.01, region=SignalRegion(7.0, 7.5))
    with pytest.raises(ValueError, match="0 < lo < hi"):
        inject_signal(jax.random.key(0), BKG, POOL, mu=0.01, region=SignalRegion(3.7, 3.3))


def test_injection_mask_vmapped_over_keys():
    pool_sr = jnp.asarray(signal_region_mask(POOL.mjj))
    keys = jax.random.split(jax.random.key(4), 500)
    masks = np.asarray(jax.vmap(lambda k: injection_mask(k, pool_sr, 7, 3))(keys))
    assert masks.shape == (500, POOL.n)
    sr = np.asarray(pool_sr)
    np.testing.assert_array_equal(masks[:, sr].sum(1), 7)
    np.testing.assert_array_equal(masks[:, ~sr].sum(1), 3)
    assert len({m.tobytes() for m in masks}) == 500  # every realisation differs
    # each signal-region event is chosen with probability 7 / P_SR (uniform selection)
    counts = masks[:, sr].sum(0)
    p = 7 / P_SR
    chi2 = ((counts - 500 * p) ** 2 / (500 * p * (1 - p))).sum()
    assert chi2 < P_SR + 5 * np.sqrt(2 * P_SR)
    # the same key reproduces the jit-compiled and the vmapped mask
    np.testing.assert_array_equal(jax.jit(injection_mask)(keys[3], pool_sr, 7, 3), masks[3])


def test_injection_mask_vmapped_over_counts_is_nested():
    """A scan over injected counts with one key: exact counts; each injection contains the smaller ones."""
    pool_sr = jnp.asarray(signal_region_mask(POOL.mjj))
    n_sr = jnp.array([0, 5, 20, 80])
    masks = np.asarray(jax.vmap(lambda n: injection_mask(jax.random.key(5), pool_sr, n, n // 2))(n_sr))
    sr = np.asarray(pool_sr)
    np.testing.assert_array_equal(masks[:, sr].sum(1), [0, 5, 20, 80])
    np.testing.assert_array_equal(masks[:, ~sr].sum(1), [0, 2, 10, 40])
    for small, large in zip(masks[:-1], masks[1:], strict=True):
        assert not (small & ~large).any()


def test_signal_count_for_mu():
    assert int(signal_count_for_mu(0.0, 1e5)) == 0
    assert int(signal_count_for_mu(0.5, 1_000)) == 1_000
    assert int(signal_count_for_mu(0.0063, 121_352)) == round(0.0063 * 121_352 / 0.9937)
    counts = jax.vmap(lambda mu: signal_count_for_mu(mu, 99_000))(jnp.array([0.0, 0.01, 0.1]))
    np.testing.assert_array_equal(counts, [0, 1_000, 11_000])
