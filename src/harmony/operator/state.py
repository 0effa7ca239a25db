"""What the operator remembers between decisions, kept in the object's status so a restart loses nothing.

`status.posterior` holds the capacity and breach-rate posteriors and the recent targets of the
stabilisation window; `status.conditions` the Ready / ForecastReady / AbleToScale / ScalingLimited
conditions with reasons. Pure functions over plain dicts.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping

import numpy as np

from harmony.decision.posteriors import BreachPosterior, CapacityPosterior
from harmony.decision.step import ControllerState

READY = "Ready"
FORECAST_READY = "ForecastReady"
ABLE_TO_SCALE = "AbleToScale"
SCALING_LIMITED = "ScalingLimited"


def restore(posterior: Mapping | None) -> ControllerState | None:
    """The controller state kept in `status.posterior`, or None when absent or unreadable (the caller then
    starts from priors: an unreadable blob, edited by hand or from an older version, must not fail the step)."""
    if not posterior:
        return None
    try:
        recent = posterior.get("recentTargets")
        return ControllerState(
            CapacityPosterior.from_dict(posterior["capacity"]),
            BreachPosterior.from_dict(posterior["breaches"]),
            None if not recent else np.asarray([recent], dtype=int),
            int(posterior.get("decisions", 0)),
            _risk(posterior.get("risk")),
        )
    except (KeyError, TypeError, ValueError, AttributeError):
        return None


def to_status(state: ControllerState) -> dict:
    return {
        "capacity": state.capacity.to_dict(),
        "breaches": state.breaches.to_dict(),
        "recentTargets": [] if state.recent_targets is None else [int(v) for v in state.recent_targets[0]],
        "decisions": state.decisions,
        **({} if state.risk is None else {"risk": state.risk}),
    }


def _risk(value: object) -> float | None:
    """The effective risk level kept in status: a probability in (0, 1), else None (start from the SLA)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < 1:
        return None
    return float(value)


TIMESTAMP = "%Y-%m-%dT%H:%M:%SZ"  # how status times are written (Kubernetes' RFC 3339, to the second)


def timestamp(now: dt.datetime) -> str:
    return now.astimezone(dt.UTC).strftime(TIMESTAMP)


def parse_timestamp(text: object) -> dt.datetime | None:
    """A time written by `timestamp`, or None for anything else (absent, not a string, another format)."""
    if not isinstance(text, str):
        return None
    try:
        return dt.datetime.strptime(text, TIMESTAMP).replace(tzinfo=dt.UTC)
    except ValueError:
        return None


def set_condition(conditions: list[dict], type_: str, status: bool, reason: str, message: str,
                  now: dt.datetime) -> list[dict]:
    """Conditions with `type_` set; lastTransitionTime changes only when the status flips."""
    value = "True" if status else "False"
    out = [dict(c) for c in conditions if c.get("type") != type_]
    previous = next((c for c in conditions if c.get("type") == type_), None)
    changed = previous is None or previous.get("status") != value
    out.append({
        "type": type_, "status": value, "reason": reason, "message": message[:1000],
        "lastTransitionTime": timestamp(now) if changed else previous.get("lastTransitionTime", timestamp(now)),
    })
    order = [READY, FORECAST_READY, ABLE_TO_SCALE, SCALING_LIMITED, "InvalidSpec"]
    return sorted(out, key=lambda c: order.index(c["type"]) if c["type"] in order else len(order))
