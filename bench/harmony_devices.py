"""Benchmark: HARMONY training on Lightning's accelerators and strategies (CPU, one GPU, DDP).

Trains the forecaster the way `harmony train --dataset fisher` does (every shipped container pooled, gaps of up
to 3 steps interpolated, per-series min-max scaled on the first 70% of rows, early stopping on the next 10%)
with `--accelerator`, `--devices` and `--strategy` passed straight to Lightning, and prints one table row:
seconds per epoch, seconds to the best epoch, best validation NLL and peak memory. Under DDP Lightning starts
one process per device by re-running this script; only rank 0 prints. Run it once per configuration and
compare rows from the same machine:

    .venv/bin/python bench/harmony_devices.py --accelerator cpu --devices 1
    .venv/bin/python bench/harmony_devices.py --accelerator cpu --devices 2 --strategy ddp
    .venv/bin/python bench/harmony_devices.py --accelerator gpu --devices 1 [--strategy ddp]
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

import torch
from pytorch_lightning.utilities import rank_zero_only
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harmony.forecasting.predictors.harmony import HarmonyPredictor  # noqa: E402
from harmony.forecasting.scaling import MinMaxScaler  # noqa: E402
from harmony.forecasting.training import TrainingSettings  # noqa: E402
from harmony.telemetry.datasets import load_dataset  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accelerator", default="cpu")
    parser.add_argument("--devices", default="1")
    parser.add_argument("--strategy", default="auto")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads per process (0: torch's default)")
    parser.add_argument("--path", default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    devices = int(args.devices) if args.devices.isdigit() else args.devices
    frame, _ = load_dataset("fisher", args.path).fill_gaps(3)
    split = frame.split(train=0.7, test=0.2)
    scaler = MinMaxScaler.fit(split.train)
    settings = TrainingSettings(max_epochs=args.epochs, patience=args.epochs, batch_size=args.batch_size,
                                accelerator=args.accelerator, devices=devices, strategy=args.strategy)
    model = HarmonyPredictor(72, 1, settings)
    started = time.perf_counter()
    model.fit(scaler.transform_frame(split.train), scaler.transform_frame(split.validation))
    wall = time.perf_counter() - started
    if rank_zero_only.rank != 0:
        return
    r = model.report
    on_gpu = args.accelerator in ("gpu", "cuda")
    device = torch.cuda.get_device_name(0) if on_gpu else f"{torch.get_num_threads()} threads"
    table = Table(title=f"HARMONY training on Fisher (pooled, lookback 72, batch {args.batch_size} per device)",
                  title_justify="left")
    for col in ("accelerator", "devices", "strategy", "device", "epochs", "s / epoch", "s to best", "best val NLL",
                "train windows", "peak RSS MiB", "peak GPU MiB"):
        table.add_column(col, justify="right")
    gpu_mib = torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available() else 0.0
    table.add_row(args.accelerator, str(devices), args.strategy, device, str(r.epochs_run),
                  f"{wall / max(r.epochs_run, 1):.2f}", f"{r.seconds_to_best:.1f}", f"{r.best_val_nll:.4f}",
                  str(r.train_windows), f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f}",
                  f"{gpu_mib:.0f}")
    Console(width=160).print(table)


if __name__ == "__main__":
    main()
