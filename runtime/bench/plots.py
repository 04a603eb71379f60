"""The benchmark report's PNG plots (matplotlib, the optional ``plots`` extra), one function per figure.

Each function takes the plain numbers from ``results.json`` and writes one
file, so a report can be re-plotted from its JSON and the plots never hold
numbers the JSON does not.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any


def pyplot() -> Any:
    """matplotlib's pyplot on the file-only Agg backend, or an ImportError naming the extra."""
    try:
        import matplotlib
    except ImportError as exc:
        raise ImportError("plots need matplotlib: pip install 'dreamwire[plots]'") from exc
    matplotlib.use("Agg")  # no display on a show machine's service account or in CI
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    pyplot().close(fig)
    return path


def _bars(path: Path, title: str, ylabel: str, groups: Sequence[str], series: Mapping[str, Sequence[float]]) -> Path:
    """Grouped bars: one group per label in ``groups``, one bar per series in each group."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    width = 0.8 / max(1, len(series))
    for k, (name, values) in enumerate(series.items()):
        xs = [i + (k - (len(series) - 1) / 2) * width for i in range(len(groups))]
        bars = ax.bar(xs, values, width, label=name)
        ax.bar_label(bars, fmt="%.1f", fontsize=7)
    ax.set_xticks(range(len(groups)), groups)
    ax.set_title(title)
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=8)
    return _save(fig, path)


def fps_by_backend(path: Path, fps: Mapping[str, Mapping[int, float]]) -> Path:
    """``fps[backend][steps]`` as bars grouped by step count."""
    steps = sorted({n for row in fps.values() for n in row})
    series = {b: [row.get(n, 0.0) for n in steps] for b, row in fps.items()}
    return _bars(path, "Engine frames/s by backend and step count", "frames/s", [f"{n} step(s)" for n in steps],
                 series)


def stream_vs_sequential(path: Path, rows: Sequence[Mapping[str, float]]) -> Path:
    groups = [f"n={int(r['n'])}" for r in rows]
    return _bars(path, "Stream batch vs sequential denoising", "ms per frame", groups,
                 {"sequential": [r["sequential_ms"] for r in rows], "stream batch": [r["stream_ms"] for r in rows]})


def rcfg_vs_cfg(path: Path, by_backend: Mapping[str, Mapping[str, float]]) -> Path:
    groups = list(by_backend)
    return _bars(path, "Residual CFG (self) vs full CFG", "ms per frame", groups,
                 {"full CFG": [by_backend[g]["full_ms"] for g in groups],
                  "RCFG self": [by_backend[g]["self_ms"] for g in groups]})


def similarity_savings(path: Path, by_input: Mapping[str, Mapping[str, float]]) -> Path:
    """Skipped fraction of engine calls and mean ms per call, for static and moving input."""
    plt = pyplot()
    fig, (a, b) = plt.subplots(1, 2, figsize=(7.2, 3.4))
    names = list(by_input)
    a.bar(names, [100 * by_input[n]["skip_fraction"] for n in names], color=["tab:green", "tab:gray"][: len(names)])
    a.set_ylabel("engine calls skipped (%)")
    b.bar(names, [by_input[n]["ms_per_call"] for n in names], color=["tab:green", "tab:gray"][: len(names)])
    b.set_ylabel("ms per call (mean)")
    fig.suptitle("Stochastic similarity filter: static vs moving input")
    return _save(fig, path)


def latency_histogram(path: Path, latencies_ms: Sequence[float], percentiles: Mapping[str, float]) -> Path:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    ax.hist(latencies_ms, bins=40, color="tab:blue", alpha=0.8)
    for (name, value), color in zip(percentiles.items(), ("tab:green", "tab:orange", "tab:red")):
        ax.axvline(value, color=color, linestyle="--", label=f"{name} {value:.1f} ms")
    ax.set_xlabel("capture-to-send latency (ms)")
    ax.set_ylabel("frames")
    ax.set_title("Live loop latency")
    ax.legend(fontsize=8)
    return _save(fig, path)
