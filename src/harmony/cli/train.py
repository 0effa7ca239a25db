"""`harmony train`: fit the HARMONY forecaster on a dataset and write a self-contained checkpoint.

Thin: it parses flags, prepares the data as `harmony evaluate --protocol rolling` does (gaps of up to
`--max-gap` steps interpolated, a 70/10/20 chronological split, a per-series min-max scaler fitted on the
training rows), then calls the library (`harmony.forecasting.predictors.harmony`). The checkpoint is usable as
`harmony evaluate --models harmony:PATH` and by `HarmonyPredictor.load(PATH)`; the per-series scaler is
stored in its metadata so raw telemetry can be put in the model's space. Registered in `harmony.cli.main`.
Lightning's `--accelerator`, `--devices` and `--strategy` pass straight through (e.g. `--accelerator gpu
--devices 4 --strategy ddp`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from harmony.cli.common import (
    AT_LEAST_ONE,
    CHECKPOINT_FORMATS,
    NON_NEGATIVE,
    POSITIVE,
    SEED,
    Bounds,
    ForceOpt,
    check_flags,
    check_out,
    console,
    dataset_input,
    dataset_options,
    load_frame,
    user_errors,
)
from harmony.errors import HarmonyInputError
from harmony.telemetry.dataset_names import DATASET_NAMES


def _devices(text: str) -> int | str:
    return int(text) if text.isdigit() else text


def check_accelerator(accelerator: str) -> None:
    """Refuse, naming the flag, an accelerator this machine does not have (Lightning would raise a
    MisconfigurationException only once the data is loaded)."""
    import torch

    name = accelerator.strip().lower()
    if name in ("gpu", "cuda") and not torch.cuda.is_available():
        raise HarmonyInputError(f"--accelerator {accelerator}: torch sees no CUDA GPU on this machine "
                                "(use --accelerator cpu or auto)")
    if name == "mps" and not torch.backends.mps.is_available():
        raise HarmonyInputError(f"--accelerator {accelerator}: torch sees no Apple MPS device on this machine "
                                "(use --accelerator cpu or auto)")


@user_errors
def train(
    dataset: Annotated[str, typer.Option("--dataset", "-d", help=f"one of: {', '.join(DATASET_NAMES)}")] = "fisher",
    path: Annotated[Path | None, typer.Option(help="a file or folder in the dataset's format")] = None,
    out: Annotated[Path, typer.Option(help=f"checkpoint to write ({' or '.join(CHECKPOINT_FORMATS)})")
                   ] = Path("model.ckpt"),
    lookback: Annotated[int, typer.Option(help="context window in steps")] = 72,
    horizon: Annotated[int, typer.Option(help="steps ahead the flow models jointly")] = 1,
    target: Annotated[str | None, typer.Option(
        help="indicator(s) the flow forecasts, comma-separated (the demand, over --horizon = the cold start plus "
             "one interval, for the decision); the others are covariates. Default: all")] = None,
    epochs: Annotated[int, typer.Option(help="maximum epochs (early stopping on validation NLL)")] = 40,
    patience: Annotated[int, typer.Option(help="epochs without a better validation NLL before stopping")] = 5,
    seed: Annotated[int, typer.Option(help="seed: the same seed gives the same checkpoint")] = 0,
    members: Annotated[int, typer.Option(help="networks of a deep ensemble, trained from seeds seed, seed + 1, ...; "
                                              "a forecast's samples are split between them")] = 1,
    no_hierarchy: Annotated[bool, typer.Option("--no-hierarchy", help="ablation: flat attention")] = False,
    no_flow: Annotated[bool, typer.Option("--no-flow", help="ablation: Gaussian head, no flow")] = False,
    flow: Annotated[str, typer.Option(help="flow kind: spline (coupling), spline-ar or maf")] = "spline",
    d_model: Annotated[int, typer.Option(help="token width")] = 32,
    heads: Annotated[int, typer.Option(help="attention heads")] = 4,
    layers: Annotated[int, typer.Option(help="attention blocks per level")] = 1,
    dropout: Annotated[float, typer.Option(help="dropout")] = 0.1,
    batch_size: Annotated[int, typer.Option(help="windows per batch")] = 64,
    learning_rate: Annotated[float, typer.Option(help="AdamW learning rate")] = 2e-3,
    crps_weight: Annotated[float, typer.Option(help="weight of the sample-CRPS loss term beside the NLL")] = 0.0,
    accelerator: Annotated[str, typer.Option(help="Lightning accelerator: cpu, gpu, auto")] = "cpu",
    devices: Annotated[str, typer.Option(help="Lightning devices: a count, 'auto', or a list")] = "1",
    strategy: Annotated[str, typer.Option(help="Lightning strategy: auto, ddp, ...")] = "auto",
    max_gap: Annotated[int, typer.Option(help="interpolate gaps up to this many steps")] = 3,
    option: Annotated[list[str] | None, typer.Option("--option", "-o", help="dataset option KEY=VALUE")] = None,
    progress: Annotated[bool, typer.Option(help="show the training progress bar")] = True,
    force: ForceOpt = False,
) -> None:
    """Train the HARMONY forecaster (hierarchical attention + normalizing flow) and save a checkpoint."""
    from pytorch_lightning.utilities import rank_zero_only

    from harmony.forecasting.predictors.harmony import HarmonyPredictor
    from harmony.forecasting.scaling import MinMaxScaler
    from harmony.forecasting.training import TrainingSettings

    check_flags({
        "--lookback": (lookback, Bounds(at_least=2)), "--horizon": (horizon, AT_LEAST_ONE),
        "--epochs": (epochs, AT_LEAST_ONE), "--patience": (patience, NON_NEGATIVE), "--seed": (seed, SEED),
        "--members": (members, AT_LEAST_ONE),
        "--d-model": (d_model, AT_LEAST_ONE), "--heads": (heads, AT_LEAST_ONE), "--layers": (layers, AT_LEAST_ONE),
        "--dropout": (dropout, Bounds(at_least=0, below=1)), "--batch-size": (batch_size, AT_LEAST_ONE),
        "--learning-rate": (learning_rate, POSITIVE), "--crps-weight": (crps_weight, NON_NEGATIVE),
        "--max-gap": (max_gap, NON_NEGATIVE),
    })
    check_accelerator(accelerator)
    check_out(out, force=force, inputs={"--path": dataset_input(dataset, path)}, formats=CHECKPOINT_FORMATS)

    targets = None if target is None else tuple(t.strip() for t in target.split(","))
    if targets is not None and not all(targets):
        raise HarmonyInputError(f"--target {target!r}: name indicators, comma-separated")
    frame = load_frame(dataset, path, dataset_options(option))
    unknown = [t for t in targets or () if t not in frame.indicator_names]
    if unknown:
        raise HarmonyInputError(f"--target {unknown[0]!r} is not an indicator of the data "
                                f"({', '.join(frame.indicator_names)})")
    frame, _ = frame.fill_gaps(max_gap)
    split = frame.split(train=0.7, test=0.2)
    scaler = MinMaxScaler.fit(split.train)
    settings = TrainingSettings(
        max_epochs=epochs, patience=patience, batch_size=batch_size, learning_rate=learning_rate,
        crps_weight=crps_weight, seed=seed, accelerator=accelerator, devices=_devices(devices), strategy=strategy,
        progress_bar=progress,
    )
    model = HarmonyPredictor(
        lookback, horizon, settings, name="harmony", targets=targets, members=members, d_model=d_model, n_heads=heads,
        layers_per_level=layers, dropout=dropout, hierarchy=not no_hierarchy, flow="none" if no_flow else flow,
    )
    if rank_zero_only.rank == 0:
        console.print(f"training on {frame!r}")
    model.fit(scaler.transform_frame(split.train), scaler.transform_frame(split.validation))
    if rank_zero_only.rank != 0:
        return  # under DDP every process trains the same synchronised weights; rank 0 alone writes and reports
    model.input_scaler = scaler if len(frame.series) == 1 else None  # one workload: served in data units
    model.metadata = {
        "dataset": dataset, "path": None if path is None else str(path), "series": list(frame.series),
        "series_scaler": scaler.to_dict(),
        "space": "per-series min-max, fitted on the first 70% of rows (as harmony evaluate scales)",
    }
    model.save(out)
    r = model.report
    console.print(
        f"best validation NLL {r.best_val_nll:.4f} per value at epoch {r.best_epoch + 1} of {r.epochs_run}, "
        f"{r.seconds:.1f} s ({r.seconds_to_best:.1f} s to the best), {r.parameters} parameters, "
        f"{r.train_windows} training windows" + (f" (the first of {members} members)" if members > 1 else "")
    )
    console.print(f"wrote {out}")
