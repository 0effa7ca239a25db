"""harmony.controller: decisions, policies, backtests, the operator and the `harmony` CLI.

Layering rule: the controller may import `forecasting`, never the reverse. Decision math (later
`controller/decision.py`, `controller/bayes.py`) stays pure: no kubernetes, prometheus or torch there.
"""
