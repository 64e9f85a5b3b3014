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


def write_json(name: str, payload: dict) -> Path:
    """Write ``benchmarks/results/<name>.json`` with the machine description."""
    out = HERE / "results"
    out.mkdir(exist_ok=True)
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
