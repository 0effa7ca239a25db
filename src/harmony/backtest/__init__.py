"""harmony.backtest: replay a trace tick by tick through the policies (harmony wraps the control step;
the baselines are faithful to their originals), the simulator, the runner and the reports.

Imports decision, forecasting and telemetry; never the operator or the CLI.
"""
