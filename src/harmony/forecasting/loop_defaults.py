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
#: The forecaster when none is named (the CRD's spec.model.forecaster default, `harmony backtest --model`'s):
#: the HARMONY model, trained on the workload's own history (`FALLBACK_MODEL` stands in until there is enough of
#: it). Chosen on the suite's validation spans (bench/forecaster_decisions.py, docs/results/forecasting.md):
#: at the SLA it cost fewer GPU-hours than ar:30 on 4 of 6 trace kinds (synthetic, ServeGen m-mid, Alibaba LoRA
#: with DEFAULT_TRAINING_S, ServeGen per-client) and more on gentd26 and ServeGen m-large.
DEFAULT_FORECASTER = "harmony"
#: What serves a workload until its model exists (too little history to train it yet): a baseline.
FALLBACK_MODEL = "ar:30"
#: The history a model trained on the workload's own telemetry learns from (the CRD's spec.model.trainingSeconds
#: default; the backtest's --training-seconds), when longer than the decision's history window: 7 days, so
#: it sees each weekday once. Chosen on the validation span of Alibaba LoRA (1 minute): harmony trained on the
#: default one day of history breached 1.70% of ticks at 173.8 GPU-hours, on 7 days 1.00% at 195.4, where
#: ar:30 breached 0.98% at 221.3.
DEFAULT_TRAINING_S = 7 * 86400
#: The most rows the default training history holds: 7 days of 30 s intervals. At finer intervals 7 days would
#: be rows a CPU trains on for hours (604,800 at 1 s; a fit of 10,080 rows takes about 42 s of one core) and
#: range queries by the dozen per indicator, so the default is this many intervals there (5.6 hours at 1 s);
#: an explicit trainingSeconds is honoured.
DEFAULT_MAX_TRAINING_STEPS = 20_160
#: Seconds between fine-tunes of a model that learns in the loop (the CRD's spec.model.fineTune.intervalSeconds
#: default; the backtest's --fine-tune-seconds default; 0: never). Off: on the suite's validation spans a
#: fine-tune every 6 hours (2 epochs on the history window, warm-started) cost GPU-hours where it ran
#: (ServeGen m-large +11.6, Alibaba LoRA +56.6, synthetic +5.5 with one more breached tick; measured before
#: the tail-fitted path factor); every hour, with it, it won on none of gentd26, ServeGen m-large, m-mid, synthetic
#: (docs/results/forecasting.md). A model trained on less than its training window (a new workload) is trained
#: again each time its history has doubled.
DEFAULT_FINE_TUNE_S = 0
