"""Named data sources: parsing, the toy source, summaries, errors."""

import json
import math

import numpy as np
import pytest

from gbijax.data import (
    FEATURE_NAMES,
    SignalRegion,
    ToyOptions,
    load_source,
    make_events,
    parse_source,
    summarize,
    toy,
)
from gbijax.data._sources import parse_toy_options

SPEC = "toy:n_background=20000,n_signal=100,n_extra_signal=1000,n_extra_background=2000,seed=1"


@pytest.fixture(scope="module")
def small_toy():
    return load_source(SPEC)


@pytest.mark.parametrize(
    "spec, expected",
    [
        ("toy", ("toy", "")),
        ("toy:seed=3", ("toy", "seed=3")),
        ("cathode:/data/lhco/cathode", ("cathode", "/data/lhco/cathode")),
        ("lhco:/a/b:c.h5", ("lhco", "/a/b:c.h5")),
        ("clustered:scalars", ("clustered", "scalars")),
    ],
)
def test_parse_source(spec, expected):
    assert parse_source(spec) == expected


@pytest.mark.parametrize(
    "spec, message",
    [
        ("nonsense:x", r"unknown data source 'nonsense:x': expected toy\[:key=value,...\], lhco:PATH"),
        ("", "unknown data source"),
        ("Toy", "unknown data source"),
        ("/data/cathode", "unknown data source"),
        ("lhco:", "data source 'lhco' needs a path: lhco:PATH"),
        ("cathode", "data source 'cathode' needs a path: cathode:DIR"),
        ("clustered:", "needs a path: clustered:DIR"),
    ],
)
def test_parse_source_errors(spec, message):
    with pytest.raises(ValueError, match=message):
        parse_source(spec)
    with pytest.raises(ValueError, match=message):
        load_source(spec)


def test_toy_options():
    assert parse_toy_options("") == ToyOptions()
    options = parse_toy_options("n_background=5, m_x=0.3,seed=7,")
    assert options == ToyOptions(n_background=5, m_x=0.3, seed=7)
    assert isinstance(options.n_background, int) and isinstance(options.m_x, float)
    assert parse_toy_options("m_y=1").m_y == 1.0


@pytest.mark.parametrize(
    "arg, message",
    [
        ("colour=red", "bad toy option 'colour=red': expected key=value with key in n_background,"),
        ("n_background", "bad toy option 'n_background'"),
        ("n_background=1.5", "toy option n_background must be an integer, got '1.5'"),
        ("m_x=heavy", "toy option m_x must be a number, got 'heavy'"),
        ("n_signal=-1", "toy option n_signal must be >= 0"),
        ("m_y=0", "toy option m_y .* must be > 0"),
        ("m_x=nan", "toy option m_x .* must be > 0"),
    ],
)
def test_toy_option_errors(arg, message):
    with pytest.raises(ValueError, match=message):
        parse_toy_options(arg)


def test_toy_source(small_toy):
    assert small_toy.source == SPEC
    assert set(small_toy.samples) == {"data", "extra_signal", "extra_background"}
    data = small_toy.data
    assert data.n == 20_100
    assert int((data.label == 1).sum()) == 100 and int((data.label == 0).sum()) == 20_000
    np.testing.assert_array_equal(data.weight, 1.0)
    assert ((data.mjj > toy.M_MIN) & (data.mjj < toy.M_MAX)).all()
    assert np.flatnonzero(data.label == 1).min() < 20_000  # shuffled, not appended
    # signal events carry the benchmark masses, background events do not
    assert np.median(data.features[data.label == 1, 1]) == pytest.approx(0.1, rel=0.05)
    for name, n, label in (("extra_signal", 1_000, 1), ("extra_background", 2_000, 0)):
        sample = small_toy.sample(name)
        assert sample.n == n and (sample.label == label).all()
        assert ((sample.mjj > 3.3) & (sample.mjj < 3.7)).all()  # signal-region samples
    with pytest.raises(ValueError, match="has no 'outerdata' sample"):
        small_toy.sample("outerdata")


def test_toy_source_is_seeded(small_toy):
    again = load_source(SPEC)
    for name, sample in small_toy.samples.items():
        np.testing.assert_array_equal(sample.features, again.samples[name].features)
        np.testing.assert_array_equal(sample.label, again.samples[name].label)
    other = load_source(SPEC.replace("seed=1", "seed=2"))
    assert not np.array_equal(small_toy.data.features, other.data.features)


def test_toy_source_passes_region_and_masses(monkeypatch):
    """The extra samples are drawn in the requested region, the signal with the requested masses (the toy
    samplers are replaced by recording stand-ins, so that no new sampler has to be compiled)."""
    calls = []

    def fake(kind):
        def sample(key, n, params=None, region=None):
            calls.append((kind, n, params, region))
            lo, hi = region if region is not None else (toy.M_MIN, toy.M_MAX)
            x = np.tile([0.1, 0.2, 0.5, 0.5], (n, 1))
            return np.column_stack([np.linspace(lo, hi, n + 2)[1:-1], x])

        return sample

    monkeypatch.setattr(toy, "background_sample", fake("background"))
    monkeypatch.setattr(toy, "signal_sample", fake("signal"))
    spec = "toy:n_background=30,n_signal=4,n_extra_signal=5,n_extra_background=6,m_x=0.3,m_y=0.2"
    dataset = load_source(spec, region=SignalRegion(3.0, 3.2))
    assert sorted((kind, n, region) for kind, n, _, region in calls) == [
        ("background", 6, (3.0, 3.2)),
        ("background", 30, None),
        ("signal", 4, None),
        ("signal", 5, (3.0, 3.2)),
    ]
    assert {tuple(params) for kind, _, params, _ in calls if kind == "signal"} == {(0.3, 0.2)}
    for name in ("extra_signal", "extra_background"):
        assert ((dataset.samples[name].mjj > 3.0) & (dataset.samples[name].mjj < 3.2)).all()
    assert dataset.data.n == 34 and int(dataset.data.label.sum()) == 4


def test_summarize_exact_values():
    features = np.array([
        [3.5, 0.1, 0.2, 0.3, 0.4],
        [3.4, 0.2, 0.1, 0.5, 0.6],
        [2.8, 0.3, 0.3, 0.7, 0.2],
        [4.1, 0.4, 0.0, 0.1, 0.8],
        [3.6, 0.5, 0.4, 0.4, 0.5],
    ])  # fmt: skip
    events = make_events(features, [1, 0, 1, 0, -1])
    summary = summarize(events)
    assert summary == {
        "n_events": 5,
        "n_signal": 2,
        "n_background": 2,
        "n_unlabelled": 1,
        "n_sr": 3,
        "n_sb": 2,
        "n_signal_sr": 1,
        "n_background_sr": 1,
        "signal_fraction_sr": 0.5,
        "signal_region": [3.3, 3.7],
        "mjj_range": [2.8, 4.1],
        "feature_names": list(FEATURE_NAMES),
        "feature_means": pytest.approx(dict(zip(FEATURE_NAMES, [3.48, 0.3, 0.2, 0.4, 0.5], strict=True))),
    }
    json.dumps(summary)  # JSON-ready
    wide = summarize(events, SignalRegion(2.5, 3.55))
    assert (wide["n_sr"], wide["n_signal_sr"], wide["n_background_sr"]) == (3, 2, 1)
    assert wide["signal_fraction_sr"] == pytest.approx(2 / 3)
    empty = summarize(make_events(np.zeros((0, 5))))
    assert empty["n_events"] == 0 and empty["feature_means"] is None and empty["mjj_range"] is None
    assert empty["signal_fraction_sr"] is None


def test_summarize_small_toy(small_toy):
    summary = summarize(small_toy.data)
    assert set(summary) >= {"n_events", "n_signal", "n_background", "n_sr", "n_sb", "feature_names",
                            "feature_means"}  # fmt: skip
    assert (summary["n_events"], summary["n_signal"], summary["n_background"]) == (20_100, 100, 20_000)
    assert summary["n_sr"] + summary["n_sb"] == 20_100
    assert summary["n_signal_sr"] + summary["n_background_sr"] == summary["n_sr"]
    # the SR holds the toy's background and signal fractions (binomial)
    bf, sf = toy.background_region_fraction((3.3, 3.7)), toy.signal_region_fraction((3.3, 3.7))
    assert summary["n_background_sr"] == pytest.approx(20_000 * bf, abs=5 * math.sqrt(20_000 * bf))
    assert summary["n_signal_sr"] == pytest.approx(100 * sf, abs=5 * math.sqrt(100 * sf * (1 - sf)))
    np.testing.assert_allclose(list(summary["feature_means"].values()), small_toy.data.features.mean(0))
    assert summary["feature_names"] == list(FEATURE_NAMES)


def test_load_source_missing_paths(tmp_path):
    with pytest.raises(FileNotFoundError, match="cathode: no such directory"):
        load_source(f"cathode:{tmp_path / 'absent'}")
    with pytest.raises(FileNotFoundError, match="lhco: no such file"):
        load_source(f"lhco:{tmp_path / 'absent.h5'}")
    with pytest.raises(FileNotFoundError, match="clustered: no such directory"):
        load_source(f"clustered:{tmp_path / 'absent'}")
    with pytest.raises(FileNotFoundError, match="holds no scalars_bkgNN.h5"):
        load_source(f"clustered:{tmp_path}")
