"""The HARMONY forecaster behind the Predictor interface: trains in `fit`, or loads a checkpoint.

fit(train, validation) fits a per-indicator min-max scaler on the training rows of all series (so the
network sees comparable magnitudes whatever the input units; the protocols' already-scaled data passes
through almost unchanged), cuts windows, and trains a HarmonyNetwork with early stopping on validation NLL
(`harmony.forecasting.training`), then calibrates the samples' spread on the validation windows.
predict(context, horizon) draws flow samples; the network inverts its per-window
normalisation per sample and this class inverts the scaler, so samples are in the context's own space.
A horizon beyond the trained one is reached recursively: each sample path is fed back as context.

Trained for the decision (`targets`): the flow then models only the named indicators (the demand) jointly
over the horizon, with every other indicator a covariate of the hierarchical encoder, so one sample is one
demand path, the quantity the decision reads (the maximum over the cold start sets replicas). Such a model
forecasts its targets only, at most its trained horizon (recursion would need the covariates' future).
`for_decision(horizon, demand)` makes an unfitted predictor that form unless its spec fixed them.

A deep ensemble (`members` > 1, spec option `members=K`): K networks trained alike from seeds seed,
seed + 1, ..., each calibrated on the validation windows, and a forecast's sample paths split between them
(n samples in all, as with one network, so prediction costs the same; training costs K times as much).
The members' disagreement is the model's uncertainty about data unlike its training rows, which one
network's own spread leaves out: on Fisher (HARMONY protocol, lookback 72, containers 1-7, 100 samples,
`bench/forecast_peers.py --harmony-options members=3`) the 90% intervals of three members covered 0.876 of
the validation rows and 0.903 of the test rows, against 0.864 and 0.869 for one network, at a CRPS no worse
(0.900x AR(36) on the test rows against 0.906x). Lakshminarayanan et al., "Simple and scalable predictive
uncertainty estimation using deep ensembles", NeurIPS 2017.

save(path) writes one file holding config, weights, scaler, indicators (names, levels, units), interval and
the training report; `HarmonyPredictor.load(path)` needs nothing else, and `fit` on a loaded predictor only
checks that the data has the same indicators. Paper: HARMONY (see `harmony.forecasting.models`).
"""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from harmony.errors import HarmonyInputError
from harmony.forecasting.forecast import Forecast
from harmony.forecasting.models.network import HarmonyConfig, HarmonyNetwork
from harmony.forecasting.models.tokens import calendar_features
from harmony.forecasting.predictor_names import CHECKPOINT_SUFFIXES, HARMONY_OPTIONS
from harmony.forecasting.predictors.base import Context, InputSchema, Predictor
from harmony.forecasting.scaling import MinMaxScaler
from harmony.forecasting.training import TrainingReport, TrainingSettings, train_network, training_windows
from harmony.telemetry.frame import Indicator, TelemetryFrame

CHECKPOINT_FORMAT = "harmony-forecaster/1"
#: What a checkpoint of that format holds (`save`); `input_scaler` came later and may be absent.
CHECKPOINT_KEYS = ("name", "config", "state_dict", "scaler", "indicators", "interval", "settings", "report",
                   "metadata")
#: windows per forward pass at prediction time (bounds memory for many series x samples)
PREDICT_BATCH = 4096


class HarmonyPredictor(Predictor):
    """HARMONY forecaster. `options` are HarmonyConfig fields (d_model, hierarchy, flow, ...)."""

    refit = False  # trained once (or loaded), then fine-tuned on a schedule: never refitted per decision
    seeds_per_series = True  # `predict` takes a seed per series: workloads can share one call

    def __init__(self, lookback: int = 72, horizon: int | None = None, settings: TrainingSettings | None = None,
                 name: str = "harmony", targets: tuple[str, ...] | None = None, members: int = 1,
                 **options) -> None:
        #: what `for_decision` may set: the horizon and targets no caller fixed
        self._open = {"horizon": horizon is None, "targets": targets is None}
        horizon = 1 if horizon is None else horizon
        if lookback < 2 or horizon < 1:
            raise HarmonyInputError(f"{name}: lookback must be >= 2 and horizon >= 1, got {lookback} and {horizon}")
        if targets is not None and (not targets or not all(targets)):
            raise HarmonyInputError(f"{name}: targets must name at least one indicator, got {list(targets)}")
        if members < 1:
            raise HarmonyInputError(f"{name}: members must be >= 1, got {members}")
        dropout = options.get("dropout", 0.0)
        if not 0 <= dropout < 1:  # NaN too
            raise HarmonyInputError(f"{name}: dropout must lie in [0, 1), got {dropout}")
        self.name = name
        self.lookback, self.horizon = lookback, horizon
        self.targets = None if targets is None else tuple(targets)
        self.settings = settings or TrainingSettings()
        self.options = options
        self.members = int(members)
        #: the ensemble's networks (one unless `members` > 1); `network` is the first
        self.networks: list[HarmonyNetwork] = []
        self.scaler: MinMaxScaler | None = None
        self.indicators: tuple[Indicator, ...] = ()
        self.interval: pd.Timedelta | None = None
        self.report: TrainingReport | None = None
        self.metadata: dict = {}
        self.from_checkpoint = False

    @property
    def min_context_steps(self) -> int:
        return self.lookback

    @property
    def network(self) -> HarmonyNetwork | None:
        """The (first) network: its config, report and calibration stand for the ensemble's."""
        return self.networks[0] if self.networks else None

    @property
    def config(self) -> HarmonyConfig | None:
        return None if self.network is None else self.network.config

    @property
    def target_names(self) -> tuple[str, ...]:
        """The indicators a fitted predictor forecasts, in its samples' order."""
        return tuple(self.indicators[p].name for p in self.network.config.target_positions)

    def for_decision(self, horizon: int, demand: tuple[str, ...]) -> HarmonyPredictor:
        """Train for what the decision reads: the demand indicators' joint path over `horizon` steps (the
        cold start plus one interval), the other indicators covariates; what the spec fixed is kept."""
        if self.network is None:
            if self._open["horizon"]:
                self.horizon = int(horizon)
            if self._open["targets"]:
                self.targets = tuple(demand)
        return self

    # -- fit -----------------------------------------------------------------------------------------
    def fit(self, train: TelemetryFrame, validation: TelemetryFrame | None = None) -> HarmonyPredictor:
        if self.from_checkpoint:
            self.schema.check(Context(train.values[:0], None, train.interval, train.indicator_names), self.name)
            if train.indicator_names != tuple(ind.name for ind in self.indicators):
                raise HarmonyInputError(
                    f"{self.name}: checkpoint indicators {[i.name for i in self.indicators]} differ from the "
                    f"data's {list(train.indicator_names)}"
                )
            return self
        n_ind = train.values.shape[2]
        self.scaler = MinMaxScaler.fit(train.values.reshape(-1, 1, n_ind))  # per indicator, over all series
        val_values = None if validation is None else self.scaler.transform(validation.values)
        windows = training_windows(
            self.scaler.transform(train.values), train.index, val_values,
            None if validation is None else validation.index, self.lookback, self.horizon,
        )
        targets = None
        if self.targets is not None:
            unknown = [t for t in self.targets if t not in train.indicator_names]
            if unknown:
                raise HarmonyInputError(f"{self.name}: target {unknown[0]!r} is not an indicator of the data "
                                        f"({', '.join(train.indicator_names)})")
            targets = tuple(train.indicator_position(t) for t in self.targets)
        try:
            config = HarmonyConfig(levels=train.levels, lookback=self.lookback, horizon=self.horizon,
                                   targets=targets, **self.options)
        except (TypeError, ValueError) as exc:
            raise HarmonyInputError(f"{self.name}: {exc}") from None
        trained = [train_network(config, *windows, replace(self.settings, seed=self.settings.seed + i))
                   for i in range(self.members)]
        self.networks = [network for network, _ in trained]
        self.report = trained[0][1]
        self.indicators, self.interval = tuple(train.indicators), train.interval
        self.remember(train)
        return self

    def fine_tune(self, train: TelemetryFrame, validation: TelemetryFrame, epochs: int,
                  max_seconds: float | None = None) -> HarmonyPredictor:
        """Keep learning from recent telemetry: train the current weights (warm start, no fresh init) for at
        most `epochs` epochs and `max_seconds` on windows of `train` (in the space the model was fitted in,
        scaled by its own scaler as at fit), keep the best on `validation` (the weights as they were are a
        candidate too: a fine-tune never makes validation NLL worse), and calibrate again on it."""
        if self.network is None:
            raise RuntimeError(f"{self.name} is not fitted")
        self.schema.check(Context(train.values[:0], None, train.interval, train.indicator_names), self.name)
        windows = training_windows(self.scaler.transform(train.values), train.index,
                                   self.scaler.transform(validation.values), validation.index,
                                   self.network.config.lookback, self.network.config.horizon)
        budget = None if max_seconds is None else max_seconds / len(self.networks)  # shared by the members
        validation_windows = windows[1].torch()
        for i, current in enumerate(self.networks):
            before = current.validation_nll(*validation_windows)
            settings = replace(self.settings, max_epochs=int(epochs), patience=int(epochs), progress_bar=False,
                               seed=self.settings.seed + i)
            network, report = train_network(current.config, *windows, settings, initial=current.state_dict(),
                                            max_seconds=budget)
            if report.best_val_nll <= before:
                self.networks[i] = network
                if i == 0:
                    self.report = report
            else:  # the new weights validate worse than the current ones: keep those, calibrated on the new rows
                current.calibrate(*validation_windows, seed=settings.seed, window_mix=self.settings.window_mix)
        return self

    # -- predict -------------------------------------------------------------------------------------
    def predict(self, context: Context, horizon: int, n_samples: int = 100,
                seed: int | Sequence[int] | None = None) -> Forecast:
        """seed: one for the whole context, or one per series (`seeds_per_series`): each series then draws
        from a generator of its own, so its samples are those it gets forecast alone, whichever series share
        the call (the operator forecasts the workloads of one model together)."""
        if self.network is None:
            raise RuntimeError(f"{self.name} is not fitted")
        values = self._check_context(context, len(self.indicators))[-self.lookback:]  # [L, S, I]
        x = torch.from_numpy(np.moveaxis(self.scaler.transform(values), 1, 0).astype(np.float32))  # [S, L, I]
        interval = context.interval if context.interval is not None else self.interval
        generator = _generators(seed, x.shape[0])
        positions = list(self.network.config.target_positions)
        if len(positions) < len(self.indicators) and horizon > self.network.config.horizon:
            raise HarmonyInputError(
                f"{self.name} was trained for {self.network.config.horizon} steps of {list(self.target_names)}; "
                f"{horizon} steps need the other indicators' future (train it with --horizon {horizon})")
        with torch.inference_mode():  # no autograd bookkeeping at all (cheaper than no_grad)
            shares = _shares(n_samples, len(self.networks))
            samples = torch.cat([self._paths(network, x, context, interval, horizon, count, generator)
                                 for network, count in zip(self.networks, shares, strict=True) if count], dim=0)
        samples = self.scaler.select(positions).inverse(np.moveaxis(samples.numpy().astype(np.float64), 2, 1))
        return Forecast(samples, None, None, self.target_names)  # [n, h, S, targets]

    def _paths(self, network: HarmonyNetwork, x: torch.Tensor, context: Context, interval: pd.Timedelta | None,
               horizon: int, n_samples: int, generator: torch.Generator | list[torch.Generator]) -> torch.Tensor:
        """[n, S, horizon, I] sample paths of one network in the scaled space; beyond the trained horizon,
        recursively."""
        n_series = x.shape[0]
        trained = network.config.horizon
        paths: list[torch.Tensor] = []  # each [n, S, H, I]
        steps = math.ceil(horizon / trained)
        for step in range(steps):
            first_time = None
            if context.end_time is not None and interval is not None:
                first_time = np.asarray(context.end_time) + (1 + step * trained) * interval.to_timedelta64()
            calendar = torch.from_numpy(calendar_features(first_time, n_series))
            if step == 0:
                paths.append(self._sample(network, x, calendar, n_samples, generator))
                if steps > 1:  # only recursion needs a context per sample path (n_samples copies of x)
                    flat = x.repeat_interleave(n_samples, dim=0)  # row s * n + k: sample path k of series s
            else:
                previous = paths[-1].transpose(0, 1).reshape(n_series * n_samples, trained, -1)
                flat = torch.cat([flat, previous], dim=1)[:, -self.lookback:]
                nxt = self._sample(network, flat, calendar.repeat_interleave(n_samples, dim=0), 1, generator)[0]
                paths.append(nxt.reshape(n_series, n_samples, trained, -1).transpose(0, 1))
        return torch.cat(paths, dim=2)[:, :, :horizon]

    @staticmethod
    def _sample(network: HarmonyNetwork, x: torch.Tensor, calendar: torch.Tensor, n_samples: int,
                generator: torch.Generator | list[torch.Generator]) -> torch.Tensor:
        """[n, B, H, I] in batches of about PREDICT_BATCH windows; with a generator per series (the rows of x
        as many equal blocks), batches of whole series."""
        chunk = max(1, PREDICT_BATCH // max(1, n_samples // 16))
        if not isinstance(generator, list):
            return torch.cat([network.sample(x[i:i + chunk], calendar[i:i + chunk], n_samples, generator)
                              for i in range(0, len(x), chunk)], dim=1)
        rows = len(x) // len(generator)
        series = max(1, chunk // rows)
        return torch.cat([network.sample(x[i * rows:(i + series) * rows], calendar[i * rows:(i + series) * rows],
                                              n_samples, generator[i:i + series])
                          for i in range(0, len(generator), series)], dim=1)

    # -- persistence ---------------------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """Write a self-contained checkpoint (config, weights, scaler, indicators with levels, interval).

        Atomically: written to a temporary file beside `path`, flushed to disk, then renamed over it, so a
        reader (the operator reloading a checkpoint a training job rewrites on a shared volume) sees the old
        file or the new one, never a part of it; a failed write leaves `path` as it was."""
        if self.network is None:
            raise RuntimeError(f"{self.name} is not fitted; nothing to save")
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        mode = path.stat().st_mode & 0o777 if path.is_file() else 0o644  # mkstemp's 0600 would hide it from readers
        handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            os.fchmod(handle, mode)
            with os.fdopen(handle, "wb") as out:
                self._write(out)
                out.flush()
                os.fsync(out.fileno())
            os.replace(temporary, path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
        return path

    def _write(self, out) -> None:
        """The checkpoint's contents, as `torch.save` writes them, into an open binary file."""
        torch.save({
            "format": CHECKPOINT_FORMAT,
            "name": self.name,
            "config": self.network.config.to_dict(),
            "state_dict": self.network.state_dict(),
            "scaler": self.scaler.to_dict(),
            "indicators": [asdict(ind) for ind in self.indicators],
            "interval": None if self.interval is None else str(self.interval),
            "settings": asdict(self.settings),
            "report": None if self.report is None else self.report.to_dict(),
            "metadata": self.metadata,
            "input_scaler": None if self.input_scaler is None else self.input_scaler.to_dict(),
            "members": [network.state_dict() for network in self.networks[1:]],  # an ensemble's other networks
        }, out)

    @classmethod
    def load(cls, path: str | Path) -> HarmonyPredictor:
        """A fitted predictor from a `save`d checkpoint; nothing else is needed."""
        path = Path(path)
        if not path.is_file():
            raise HarmonyInputError(f"checkpoint {path} does not exist")
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 - any unpickling failure means "not our checkpoint"
            raise HarmonyInputError(f"{path} is not a harmony checkpoint ({type(exc).__name__})") from None
        if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
            raise HarmonyInputError(f"{path} is not a harmony checkpoint (format {CHECKPOINT_FORMAT})")
        missing = [key for key in CHECKPOINT_KEYS if key not in state]
        if missing:
            raise HarmonyInputError(f"{path}: damaged harmony checkpoint, it lacks {', '.join(map(repr, missing))} "
                                    f"(format {CHECKPOINT_FORMAT}); train it again")
        try:
            return cls._from_state(state)
        except (KeyError, TypeError, ValueError, AttributeError, RuntimeError) as exc:  # wrong shapes or fields
            said = " ".join(str(exc).split())  # torch's state_dict errors span lines: one line, shortened
            said = said if len(said) <= 200 else said[:197] + "..."
            raise HarmonyInputError(f"{path}: damaged harmony checkpoint ({type(exc).__name__}: {said}); "
                                    "train it again") from None

    @classmethod
    def _from_state(cls, state: dict) -> HarmonyPredictor:
        config = HarmonyConfig.from_dict(state["config"])
        settings = TrainingSettings(**state["settings"])
        model = cls(config.lookback, config.horizon, settings, name=state["name"])
        model._open = {"horizon": False, "targets": False}
        model.networks = [_network(config, weights) for weights in [state["state_dict"], *state.get("members", [])]]
        model.members = len(model.networks)
        model.scaler = MinMaxScaler.from_dict(state["scaler"])
        model.indicators = tuple(Indicator(**ind) for ind in state["indicators"])
        model.interval = None if state["interval"] is None else pd.Timedelta(state["interval"])
        model.report = None if state["report"] is None else TrainingReport(**state["report"])
        model.metadata = state["metadata"]
        model.input_scaler = _input_scaler(state)
        model.schema = InputSchema(tuple(i.name for i in model.indicators), tuple(i.level for i in model.indicators),
                                   model.interval)
        model.from_checkpoint = True
        return model

    def with_settings(self, **changes) -> HarmonyPredictor:
        """The same (unfitted) predictor with some training settings changed."""
        self.settings = replace(self.settings, **changes)
        return self


def _network(config: HarmonyConfig, state_dict: dict) -> HarmonyNetwork:
    """A network of `config` with saved weights, in eval mode; calibration buffers a checkpoint from before
    them lacks keep their neutral values."""
    network = HarmonyNetwork(config)
    weights = dict(state_dict)
    weights.setdefault("spread", network.spread)  # checkpoints from before spread calibration
    weights.setdefault("window_mix", network.window_mix)  # ... and before the window mixture
    weights.setdefault("window_recent", network.window_recent)  # ... and before its recent span
    network.load_state_dict(weights)
    return network.eval()


def _shares(n_samples: int, members: int) -> list[int]:
    """How many of `n_samples` sample paths each of `members` networks draws: as equal as they can be, the
    first ones one more (a member may draw none when there are fewer samples than members)."""
    return [n_samples // members + (i < n_samples % members) for i in range(members)]


def _generators(seed: int | Sequence[int] | None, n_series: int) -> torch.Generator | list[torch.Generator]:
    """One generator for `seed` (None: fresh entropy, drawn without touching torch's or numpy's global
    generators), or one per series for a sequence of seeds."""
    if seed is None:
        seed = int(np.random.SeedSequence().generate_state(1, np.uint64)[0] >> 1)
    if isinstance(seed, Sequence | np.ndarray):
        if len(seed) != n_series:
            raise HarmonyInputError(f"{len(seed)} seeds for {n_series} series: give one seed, or one per series")
        return [torch.Generator().manual_seed(int(s)) for s in seed]
    return torch.Generator().manual_seed(int(seed))


def _input_scaler(state: dict) -> MinMaxScaler | None:
    """The scaler from data units into the space the checkpoint was trained in: saved with it, or (older
    checkpoints of `harmony train`) the per-series scaler of its metadata when it was trained on one series.
    None when the checkpoint cannot say (trained on several series, each scaled apart): it then serves only
    callers that scale their contexts themselves, as the evaluation protocols do."""
    if state.get("input_scaler"):
        return MinMaxScaler.from_dict(state["input_scaler"])
    series = (state.get("metadata") or {}).get("series_scaler")
    if series:
        scaler = MinMaxScaler.from_dict(series)
        if scaler.data_min.shape[0] == 1:
            return scaler
    return None


def harmony_from_spec(spec: str, arg: str | None, name: str = "harmony", **fixed) -> HarmonyPredictor:
    """`harmony`, `harmony:PATH.ckpt` (load) or `harmony:KEY=VALUE+KEY=VALUE...` (a bare integer is the
    lookback); `fixed` are HarmonyConfig fields an ablation pins (hierarchy=False, flow="none")."""
    if arg and (arg.endswith(CHECKPOINT_SUFFIXES) or Path(arg).is_file()):
        if fixed:
            raise HarmonyInputError(f"model {spec!r} (--models): load checkpoints with 'harmony:{arg}'")
        return HarmonyPredictor.load(arg)
    kwargs: dict = {}
    config: dict = dict(fixed)
    settings: dict = {}
    for item in (arg or "").split("+"):
        if not item:
            continue
        key, sep, value = item.partition("=")
        if not sep:
            key, value = "lookback", item
        if key not in HARMONY_OPTIONS:
            raise HarmonyInputError(
                f"model {spec!r} (--models): unknown option {key!r}; known: {', '.join(HARMONY_OPTIONS)}"
            )
        target, field, cast = HARMONY_OPTIONS[key]
        try:
            typed = cast(value)
        except ValueError:
            raise HarmonyInputError(f"model {spec!r} (--models): {key}={value!r} is not a {cast.__name__}") from None
        {"predictor": kwargs, "config": config, "settings": settings}[target][field] = typed
    if kwargs.get("lookback", 2) < 2 or kwargs.get("horizon", 1) < 1:
        raise HarmonyInputError(f"model {spec!r} (--models): lookback must be >= 2 and horizon >= 1")
    try:
        return HarmonyPredictor(**kwargs, settings=TrainingSettings(**settings), name=name, **config)
    except HarmonyInputError as exc:
        raise HarmonyInputError(f"model {spec!r} (--models): {exc}") from None
