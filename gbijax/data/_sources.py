"""Named data sources: ``toy``, ``lhco:PATH``, ``cathode:DIR``, ``clustered:DIR``."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import jax
import numpy as np

from gbijax.data import toy
from gbijax.data._events import BACKGROUND, FEATURE_NAMES, SIGNAL, Events, concatenate, make_events
from gbijax.data._readers import read_cathode, read_clustered, read_lhco_features
from gbijax.data._regions import DEFAULT_SR, SignalRegion

SOURCE_KINDS = ("toy", "lhco", "cathode", "clustered")
SOURCE_HELP = "toy[:key=value,...], lhco:PATH, cathode:DIR or clustered:DIR"


@dataclasses.dataclass(frozen=True)
class ToyOptions:
    """Sizes and truth of the built-in toy source (``toy:n_background=...,seed=...``).

    The defaults mimic the LHCO R&D sample: 1,000,000 background events over the full mjj
    range with 1,000 signal events injected, plus an independent signal-region background
    sample and a signal-region signal sample for injections.
    """

    n_background: int = 1_000_000
    n_signal: int = 1_000
    n_extra_signal: int = 50_000
    n_extra_background: int = 200_000
    m_x: float = 0.5
    m_y: float = 0.1
    seed: int = 0


@dataclasses.dataclass(frozen=True)
class Dataset:
    """The samples of one data source.

    Attributes:
        source: the source string it was loaded from.
        samples: named event sets; ``"data"`` is the main sample, ``"extra_signal"`` and
            ``"extra_background"`` exist where the source provides them.
    """

    source: str
    samples: dict[str, Events]

    @property
    def data(self) -> Events:
        return self.samples["data"]

    def sample(self, name: str) -> Events:
        if name not in self.samples:
            raise ValueError(
                f"data source {self.source!r} has no {name!r} sample (it has: "
                f"{', '.join(self.samples)})"
            )
        return self.samples[name]


def parse_source(spec: str) -> tuple[str, str]:
    """Split ``"kind:argument"``; raise a clear error for unknown kinds.

    >>> parse_source("cathode:/data/lhco")
    ('cathode', '/data/lhco')
    """
    kind, _, arg = str(spec).partition(":")
    if kind not in SOURCE_KINDS:
        raise ValueError(f"unknown data source {spec!r}: expected {SOURCE_HELP}")
    if kind != "toy" and not arg:
        raise ValueError(f"data source {kind!r} needs a path: {kind}:{'PATH' if kind == 'lhco' else 'DIR'}")
    return kind, arg


def parse_toy_options(arg: str) -> ToyOptions:
    """Parse ``"n_background=200000,seed=3"`` into :class:`ToyOptions`."""
    # the field types, from the defaults (robust to string annotations)
    fields = {f.name: type(f.default) for f in dataclasses.fields(ToyOptions)}
    values = {}
    for item in filter(None, arg.split(",")):
        name, sep, value = item.strip().partition("=")
        if not sep or name not in fields:
            raise ValueError(f"bad toy option {item!r}: expected key=value with key in {', '.join(fields)}")
        cast = fields[name]
        try:
            values[name] = cast(value)
        except ValueError:
            kind = "a number" if cast is float else "an integer"
            raise ValueError(f"toy option {name} must be {kind}, got {value!r}") from None
    options = ToyOptions(**values)
    for name in ("n_background", "n_signal", "n_extra_signal", "n_extra_background"):
        if getattr(options, name) < 0:
            raise ValueError(f"toy option {name} must be >= 0")
    for name in ("m_x", "m_y"):
        if not (np.isfinite(getattr(options, name)) and getattr(options, name) > 0):
            raise ValueError(f"toy option {name} (a daughter mass in TeV) must be > 0")
    return options


def toy_signal_params(spec: str) -> toy.SignalParams | None:
    """The signal masses of a ``toy[:options]`` source (None for the real sources): the truth that
    the oracle's density and the PAWS contours are taken at.

    >>> toy_signal_params("toy:m_x=0.3,m_y=0.2")
    SignalParams(m_x=0.3, m_y=0.2)
    >>> toy_signal_params("cathode:/data") is None
    True
    """
    kind, arg = parse_source(spec)
    if kind != "toy":
        return None
    options = parse_toy_options(arg)
    return toy.SignalParams(options.m_x, options.m_y)


def load_toy(options: ToyOptions = ToyOptions(), region: SignalRegion = DEFAULT_SR) -> Dataset:
    """Sample the toy source: data (background + signal over the full mjj range) and the
    signal-region-only extra signal and extra background samples."""
    params = toy.SignalParams(options.m_x, options.m_y)
    keys = jax.random.split(jax.random.key(options.seed), 4)
    sr = (region.lo, region.hi)

    def labelled(x, label):
        return make_events(np.asarray(x, np.float64), np.full(len(x), label, np.int32), name="toy")

    data = concatenate(
        labelled(toy.background_sample(keys[0], options.n_background), BACKGROUND),
        labelled(toy.signal_sample(keys[1], options.n_signal, params), SIGNAL),
    )
    perm = np.asarray(jax.random.permutation(keys[2], data.n))
    data = Events(*(a[perm] for a in data))
    k_sig, k_bkg = jax.random.split(keys[3])
    return Dataset("toy", {
        "data": data,
        "extra_signal": labelled(toy.signal_sample(k_sig, options.n_extra_signal, params, region=sr), SIGNAL),
        "extra_background": labelled(
            toy.background_sample(k_bkg, options.n_extra_background, region=sr), BACKGROUND
        ),
    })


def load_source(spec: str, region: SignalRegion = DEFAULT_SR) -> Dataset:
    """Load a data source by name: ``toy``, ``lhco:PATH``, ``cathode:DIR`` or ``clustered:DIR``.

    Raises:
        ValueError: unknown source kind, malformed file.
        FileNotFoundError: the path does not exist.
    """
    kind, arg = parse_source(spec)
    if kind == "toy":
        return dataclasses.replace(load_toy(parse_toy_options(arg), region), source=spec)
    path = Path(arg).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"{kind}: no such {'file' if kind == 'lhco' else 'directory'}: {path}")
    if kind == "lhco":
        return Dataset(spec, {"data": read_lhco_features(path)})
    if kind == "cathode":
        return Dataset(spec, read_cathode(path))
    return Dataset(spec, {"data": read_clustered(path)})


def summarize(events: Events, region: SignalRegion = DEFAULT_SR) -> dict:
    """Counts and feature means of an event set, as a JSON-ready dict.

    Keys: ``n_events, n_signal, n_background, n_unlabelled, n_sr, n_sb, n_signal_sr,
    n_background_sr, signal_fraction_sr, signal_region, mjj_range, feature_names,
    feature_means`` (physical units, over all events).
    """
    in_sr = np.asarray(region.contains(events.mjj))
    sig, bkg = events.label == SIGNAL, events.label == BACKGROUND
    n_sr_sig, n_sr_bkg = int((sig & in_sr).sum()), int((bkg & in_sr).sum())
    labelled_sr = n_sr_sig + n_sr_bkg
    return {
        "n_events": events.n,
        "n_signal": int(sig.sum()),
        "n_background": int(bkg.sum()),
        "n_unlabelled": int(events.n - sig.sum() - bkg.sum()),
        "n_sr": int(in_sr.sum()),
        "n_sb": int((~in_sr).sum()),
        "n_signal_sr": n_sr_sig,
        "n_background_sr": n_sr_bkg,
        "signal_fraction_sr": n_sr_sig / labelled_sr if labelled_sr else None,
        "signal_region": [region.lo, region.hi],
        "mjj_range": [float(events.mjj.min()), float(events.mjj.max())] if events.n else None,
        "feature_names": list(FEATURE_NAMES),
        "feature_means": dict(zip(FEATURE_NAMES, events.features.mean(0).tolist(), strict=True))
        if events.n else None,
    }
