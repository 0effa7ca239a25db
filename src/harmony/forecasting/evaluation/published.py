"""Figures published with the HARMONY paper's code, for printing beside our own (never mixed into them).

Source: repository Floating-LY/HARMONY1, file result_Fisher.txt (model "harmony", Fisher containers 1..10,
HARMONY protocol, horizon 1). MSE and CRPS in the min-max scaled space. Note that the published CRPS was
computed from the samples of the flow (NP branch), but the published MSE from the pre-flow point output.
"""

from __future__ import annotations

SOURCE = "Floating-LY/HARMONY1 result_Fisher.txt"

#: (container, lookback) -> (mse, crps)
HARMONY_FISHER: dict[tuple[str, int], tuple[float, float]] = {
    ("container1", 72): (0.05457, 0.11392), ("container1", 144): (0.05569, 0.10936),
    ("container1", 288): (0.06601, 0.13157),
    ("container2", 72): (0.04260, 0.08375), ("container2", 144): (0.04322, 0.07945),
    ("container2", 288): (0.04547, 0.09996),
    ("container3", 72): (0.05211, 0.11536), ("container3", 144): (0.05190, 0.11030),
    ("container3", 288): (0.05345, 0.12722),
    ("container4", 72): (0.06131, 0.12212), ("container4", 144): (0.06120, 0.12259),
    ("container4", 288): (0.06208, 0.13398),
    ("container5", 72): (0.04303, 0.10850), ("container5", 144): (0.04402, 0.10192),
    ("container5", 288): (0.04422, 0.11375),
    ("container6", 72): (0.03957, 0.08921), ("container6", 144): (0.03951, 0.07643),
    ("container6", 288): (0.03961, 0.09066),
    ("container7", 72): (0.06075, 0.12840), ("container7", 144): (0.06131, 0.11232),
    ("container7", 288): (0.06251, 0.14145),
    ("container8", 72): (0.01644, 0.03815), ("container8", 144): (0.01611, 0.03546),
    ("container8", 288): (0.01648, 0.03906),
    ("container9", 72): (0.03563, 0.08605), ("container9", 144): (0.03764, 0.09310),
    ("container9", 288): (0.03673, 0.11051),
    ("container10", 72): (0.04690, 0.10980), ("container10", 144): (0.04699, 0.09901),
    ("container10", 288): (0.04752, 0.10836),
}

#: lookback -> (mse, crps), mean over the 10 published containers (as quoted in datasets/README.md)
HARMONY_FISHER_MEAN: dict[int, tuple[float, float]] = {
    72: (0.0453, 0.0995),
    144: (0.0458, 0.0940),
    288: (0.0474, 0.1097),
}

#: The reference figure for a per-indicator ridge AR(36) with empirical residuals, same protocol,
#: mean over the 10 containers.
AR36_FISHER_MEAN = (0.0439, 0.0667)


def published_rows(series: list[str], lookback: int) -> list[dict]:
    """Published HARMONY rows for the given containers at one lookback (those that were published), their
    mean (comparable with our mean over the same containers) and the published mean over all 10."""
    rows = []
    for name in series:
        fig = HARMONY_FISHER.get((name, lookback))
        if fig is not None:
            rows.append({"series": name, "model": "harmony (published)", "mse": fig[0], "crps": fig[1]})
    if rows:
        rows.append({"series": "mean", "model": "harmony (published)",
                     "mse": sum(r["mse"] for r in rows) / len(rows), "crps": sum(r["crps"] for r in rows) / len(rows)})
    if lookback in HARMONY_FISHER_MEAN:
        mse, crps = HARMONY_FISHER_MEAN[lookback]
        rows.append({"series": "mean of 10 (published)", "model": "harmony (published)", "mse": mse, "crps": crps})
    return rows
