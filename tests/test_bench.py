"""`dreamwire bench` runs end to end on the tiny model and reports consistent figures (no timing asserts)."""

from __future__ import annotations

from dreamwire.bench.engine import format_results, run


def test_bench_reports_every_comparison():
    r = run("tiny", size=64, backend="torch", device="cpu", rounds=1, per_round=1, steps=(1, 2))
    assert [row["n"] for row in r["stream_vs_sequential"]] == [1, 2]
    for row in r["stream_vs_sequential"]:
        assert row["stream_ms"] > 0 and row["sequential_ms"] > 0
        assert abs(row["speedup"] - row["sequential_ms"] / row["stream_ms"]) < 1e-9
    assert r["rcfg_self_vs_full"]["full_ms"] > 0
    s = r["similarity_static"]
    # A static input: the first call is processed, then every (cap+1)-th is forced through.
    cycle = s["max_skip"] + 1
    assert s["skipped"] == (s["calls"] - 1) // cycle * s["max_skip"] + min((s["calls"] - 1) % cycle, s["max_skip"])
    c = r["nan_check"]
    assert c["ms"] > 0 and c["fraction_of_step"] == c["ms"] / c["step_ms"]
    assert "stream ms/frame" in format_results(r) and "NaN/inf guard" in format_results(r)
