"""The backtest suite on a small trace: the three settings, intervals, targets, failures and the report."""

from __future__ import annotations

from harmony.backtest.suite import MAIN_COLUMNS, TraceSpec, run_suite, write_suite

SMALL = TraceSpec("synthetic-small", "synthetic, 4 days at 10 min", "synthetic",
                  {"series": "1", "interval": "10min", "steps": str(4 * 144), "seed": "3"}, cold_start_s=600.0,
                  ratio_target=2.0)
BROKEN = TraceSpec("broken", "a trace without its demand indicator", "synthetic", {"series": "1", "steps": "50"},
                   indicators=("requests",))
NAMES = ["harmony", "hpa", "quantile"]


def grid(name):
    return {"harmony": (0.005, 0.01, 0.05), "hpa": (0.5, 0.7), "quantile": (0.95, 0.99)}[name]


def test_the_suite_reports_every_setting_with_intervals_and_lists_failures(tmp_path):
    result = run_suite([SMALL, BROKEN], sla=0.01, names=NAMES, grid=grid, replicates=50)
    rows = [r for r in result.rows if r["trace"] == SMALL.key]
    assert {(r["policy"], r["setting"]) for r in rows} == {
        (p, s) for p in NAMES for s in ("default", "validation", "hindsight")} | {("oracle", "perfect foresight")}
    for r in rows:
        if r["policy"] != "oracle":
            assert r["breach_rate_lo"] <= r["breach_rate"] <= r["breach_rate_hi"]
            assert r["gpu_hours_lo"] <= r["gpu_hours"] <= r["gpu_hours_hi"]
            assert r["oracle_ratio"] >= 1.0 or r["breach_rate"] > 0  # only breaching can beat perfect foresight
    default = next(r for r in rows if r["policy"] == "harmony" and r["setting"] == "default")
    assert default["value"] == 0.01
    hindsight = {r["policy"]: r for r in rows if r["setting"] == "hindsight"}
    chosen = {r["policy"]: r for r in rows if r["setting"] == "validation"}
    for p in NAMES:  # hindsight is the cheapest within the SLA on the evaluated span: nothing beats it there
        if hindsight[p]["meets_sla"] and chosen[p]["meets_sla"]:
            assert hindsight[p]["gpu_hours"] <= chosen[p]["gpu_hours"]
    assert {r["rival"] for r in result.paired} == {"hpa", "quantile"}
    targets = {t["target"] for t in result.targets}
    assert "breach rate in [0.5%, 1.5%]" in targets and "oracle ratio <= 2" in targets
    assert [f["trace"] for f in result.failed] == ["broken"] and "gpu_busy" in result.failed[0]["reason"]
    written = write_suite(result, tmp_path / "suite", 0.01)
    names = {p.name for p in written}
    assert {"suite.csv", "paired.csv", "targets.csv", "failed.csv", "report.html",
            "synthetic-small-capacity.png", "synthetic-small-cost_breach.png"} <= names
    header = (tmp_path / "suite" / "suite.csv").read_text().splitlines()[0].split(",")
    assert header == MAIN_COLUMNS
    assert "Traces that could not be replayed" in (tmp_path / "suite" / "report.html").read_text()
