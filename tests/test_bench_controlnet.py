"""`dreamwire bench --controlnet` times 0, 1 and 2 ControlNets in one run (no timing asserts)."""

from __future__ import annotations

import json
import subprocess
import sys

from dreamwire.bench.controlnet import controlnet_cost, format_cost


def test_cost_rows_time_engines_with_0_1_2_controlnets():
    r = controlnet_cost("tiny", "tiny", size=64, device="cpu", rounds=2, per_round=2)
    rows = r["rows"]
    assert [x["controlnets"] for x in rows] == [0, 1, 2]
    # each ControlNet runs exactly once per engine step (batched over the stream rows), so the
    # measured engines really carry 0, 1 and 2 ControlNets
    assert [x["controlnet_calls_per_step"] for x in rows] == [0.0, 1.0, 2.0]
    for x in rows:
        assert x["ms_per_step"] > 0 and abs(x["ratio"] - x["ms_per_step"] / rows[0]["ms_per_step"]) < 1e-9
    assert "| 2 |" in format_cost(r)


def test_bench_command_reports_the_controlnet_cost():
    out = subprocess.run([sys.executable, "-m", "dreamwire", "bench", "--size", "64", "--rounds", "1",
                          "--per-round", "1", "--controlnet", "tiny", "--json"],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    r = json.loads(out.stdout)
    assert [x["controlnets"] for x in r["controlnet"]["rows"]] == [0, 1, 2]
