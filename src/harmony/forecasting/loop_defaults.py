"""The forecasting adapter's defaults (`harmony.forecasting.adapter`), as plain numbers: the CRD, the operator
and `harmony backtest --help` name them without importing the models or pandas."""

from __future__ import annotations

#: Decisions between refits of a baseline (1: every decision; a ridge AR fit over a few hundred rows takes
#: milliseconds, and refitting keeps its residuals as recent as the history window).
REFIT_EVERY = 1
#: Telemetry history each decision reads, in control intervals: the CRD's historySeconds default is this many
#: intervals (12 h at 30 s, 24 h at 1 minute, 10 days at 10 minutes), as a baseline needs rows, not seconds.
#: Chosen on validation spans: on gentd26 (1 minute) 12 h of history beat 6 h (harmony at its default:
#: 67.8 GPU-hours at 0% breached against 71.0 at 1.04%), and on ServeGen (10 minutes) 12 h, 72 rows, left
#: ar:30 so narrow that harmony breached 7.1% of ticks on m-large against 1.2% with 7 days.
DEFAULT_HISTORY_STEPS = 1440
#: Context the forecast starts from, in control intervals (the CRD's lookbackSeconds default).
DEFAULT_LOOKBACK_STEPS = 120
#: The CRD's bounds on historySeconds and lookbackSeconds.
MAX_HISTORY_S = 2592000
MAX_LOOKBACK_S = 604800
#: Seconds between fine-tunes of a model that learns in the loop (the CRD's spec.model.fineTune.intervalSeconds
#: default; the backtest's --fine-tune-seconds default): four a day, each a few epochs on the history window.
DEFAULT_FINE_TUNE_S = 21600
