"""Shared helpers of the benchmark scripts: timing medians, machine description, JSON output."""

from __future__ import annotations

import json
import os
import platform
import resource
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import jax

HERE = Path(__file__).resolve().parent


def results_dir() -> Path:
    """Where the JSON results go: ``$GBIJAX_BENCH_RESULTS`` if set, else ``benchmarks/results``.

    A run on another machine (a GPU) writes to its own folder so the CPU figures are kept.
    """
    return Path(os.environ.get("GBIJAX_BENCH_RESULTS", HERE / "results"))


def machine() -> dict:
    """CPU model, cores, JAX version and device of this run."""
    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "jax": jax.__version__,
        "device": str(jax.devices()[0]),
        "device_kind": jax.devices()[0].device_kind,
        "n_devices": len(jax.devices()),
        "date": time.strftime("%Y-%m-%d"),
    }


def timed(fn: Callable[[], object], repeats: int = 3) -> dict:
    """Compile once (first call, timed apart), then the median wall time of ``repeats`` calls."""
    start = time.perf_counter()
    jax.block_until_ready(fn())
    first = time.perf_counter() - start
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - start)
    return {"first_call_s": first, "median_s": statistics.median(times), "runs_s": times}


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far (MB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def on_device(m: dict) -> str:
    """A RESULTS.md title suffix for runs on an accelerator (" on NVIDIA H200"); empty on the CPU."""
    on_cpu = m["device"].lower().startswith(("cpu", "tfrt_cpu"))
    return "" if on_cpu else f" on {m.get('device_kind', m['device'])}"


def fmt_seconds(t: float) -> str:
    """``12.3 s``; ``4.5 ms`` under a second, ``15 min`` over five minutes."""
    return f"{t * 1e3:.1f} ms" if t < 1 else f"{t:.1f} s" if t < 300 else f"{t / 60:.0f} min"


def peak_device_mb() -> float | None:
    """Peak memory the accelerator's allocator held in this process (MB); None on the CPU."""
    stats = jax.devices()[0].memory_stats() or {}
    peak = stats.get("peak_bytes_in_use")
    return None if peak is None else peak / 2**20


def write_json(name: str, payload: dict) -> Path:
    """Write ``<results_dir()>/<name>.json`` with the machine description."""
    out = results_dir()
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{name}.json"
    path.write_text(json.dumps({"machine": machine(), **payload}, indent=2))
    return path


def write_section(section: str) -> Path:
    """Put ``section`` (its first line is its ``## `` title) into ``benchmarks/RESULTS.md``.

    A section with the same title is replaced up to the next ``## `` title; a new one is appended.
    """
    path = HERE / "RESULTS.md"
    text = path.read_text() if path.exists() else "# Benchmark results\n"
    title = section.splitlines()[0]
    if title in text:
        head, _, rest = text.partition(title)
        tail = rest[rest.find("\n## ") + 1 :] if "\n## " in rest else ""
        text = head + section + ("\n" + tail if tail else "")
    else:
        text = text.rstrip("\n") + "\n\n" + section
    path.write_text(text)
    return path
