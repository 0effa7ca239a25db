"""What the operator remembers between decisions, kept in the object's status so a restart loses nothing.

`status.posterior` holds the capacity and breach-rate posteriors and the recent targets of the
stabilisation window; `status.conditions` the Ready / ForecastReady / AbleToScale / ScalingLimited
conditions with reasons. Pure functions over plain dicts.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from harmony.decision.posteriors import BreachPosterior, CapacityPosterior

READY = "Ready"
FORECAST_READY = "ForecastReady"
ABLE_TO_SCALE = "AbleToScale"
SCALING_LIMITED = "ScalingLimited"


@dataclass(frozen=True)
class AutoscalerState:
    """Posteriors, the stabilisation window's recent targets (None: fresh start) and a decision count."""

    capacity: CapacityPosterior
    breaches: BreachPosterior
    recent_targets: np.ndarray | None
    decisions: int = 0

    @classmethod
    def restore(cls, posterior: Mapping | None, capacity: float, capacity_relative_sd: float,
                sla: float) -> AutoscalerState:
        """From `status.posterior`, or fresh priors (capacity centred on `capacity`) when absent or unreadable."""
        try:
            if posterior:
                recent = posterior.get("recentTargets")
                return cls(
                    CapacityPosterior.from_dict(posterior["capacity"]),
                    BreachPosterior.from_dict(posterior["breaches"]),
                    None if not recent else np.asarray([recent], dtype=int),
                    int(posterior.get("decisions", 0)),
                )
        except (KeyError, TypeError, ValueError):
            pass  # an unreadable blob (edited by hand, older version): start from priors rather than fail
        return cls(CapacityPosterior.prior(capacity, relative_sd=capacity_relative_sd), BreachPosterior.prior(sla),
                   None, 0)

    def to_status(self) -> dict:
        return {
            "capacity": self.capacity.to_dict(),
            "breaches": self.breaches.to_dict(),
            "recentTargets": [] if self.recent_targets is None else [int(v) for v in self.recent_targets[0]],
            "decisions": self.decisions,
        }


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
