"""What the operator remembers between decisions, kept in the object's status so a restart loses nothing.

`status.posterior` holds the capacity and breach-rate posteriors and the behaviour's memory (the recent
targets of the stabilisation windows, the recent replica counts of the rate policies' periods);
`status.conditions` the Ready / ForecastReady / AbleToScale / ScalingLimited
conditions with reasons. Pure functions over plain dicts.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Mapping

import numpy as np

from harmony.decision.posteriors import BreachPosterior, CapacityPosterior
from harmony.decision.step import DECLARED_CAPACITY_RELATIVE_SD, ControllerState

READY = "Ready"
FORECAST_READY = "ForecastReady"
ABLE_TO_SCALE = "AbleToScale"
SCALING_LIMITED = "ScalingLimited"
#: metav1.Condition's reason: CamelCase, the pattern the CRD's schema enforces on status.conditions[].reason
CONDITION_REASON = re.compile(r"[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?")


#: Most recent targets (or replica counts) a status may hold: the HPA's longest stabilisation window (3600 s)
#: at a 1 s interval needs 3599 (its longest period, 1800 s, 1799); a longer list was not written by us.
MAX_RECENT_TARGETS = 4096
#: How far a restored capacity mean may sit from the declared capacity: 4 prior standard deviations of a
#: declared figure. A declared capacity is never learned, so a posterior made with it keeps it exactly; one
#: further off was corrupted, or made for another capacity by a status from before `declaredCapacity` was kept.
DECLARED_CAPACITY_TOLERANCE = 4 * DECLARED_CAPACITY_RELATIVE_SD


def restore(posterior: Mapping | None, declared_capacity: float | None = None,
            max_replicas: int | None = None) -> ControllerState | None:
    """The controller state kept in `status.posterior`, or None when absent, unreadable, implausible or made
    for another capacity; the caller then starts from priors (`read_posterior` also says why)."""
    return read_posterior(posterior, declared_capacity, max_replicas)[0]


def read_posterior(posterior: Mapping | None, declared_capacity: float | None = None,
                   max_replicas: int | None = None) -> tuple[ControllerState | None, str]:
    """`restore`'s state, and why a posterior that is there was discarded ("" when it was restored or absent),
    naming the fields at fault, so that the operator can say what it no longer trusts.

    An unreadable blob (edited by hand, from an older version) must not fail the step, and a parseable but
    impossible one must not be trusted: a capacity mean of zero or a variance of inf would size the workload
    on nonsense from the first decision. So every number is checked (`_read`), and a blob with one bad
    field is discarded whole (which field is corrupt says nothing about the others).

    declared_capacity: the spec's `capacityPerReplica` (None: learned). The posterior is discarded when it was
    made with another declared capacity, or with none (learned), or with one when none is declared now, so
    that editing `capacityPerReplica` takes effect at the next decision; a status from before
    `declaredCapacity` was kept is checked by its mean alone (DECLARED_CAPACITY_TOLERANCE), any other by both.
    max_replicas: the spec's `maxReplicas`; recent targets above it are read as it (a target the old bound
    allowed must not hold the count above the new one). None: unchecked.
    """
    if not posterior:
        return None, ""
    try:
        state, problems = _read(posterior, max_replicas)
    except KeyError as exc:
        return None, f"no {exc.args[0]!r} field"
    except (TypeError, ValueError, AttributeError, OverflowError) as exc:
        return None, f"unreadable ({type(exc).__name__}: {exc})"
    if state is None:
        return None, "; ".join(problems)
    other = _other_capacity(posterior, state.capacity, declared_capacity)
    return (None, other) if other else (state, "")


def to_status(state: ControllerState, declared_capacity: float | None = None) -> dict:
    """`status.posterior` for `state`, with the declared capacity it was made with (0: none declared,
    learned; a number, never null, because a merge patch deletes a null and would leave an old value)."""
    return {
        "capacity": state.capacity.to_dict(),
        "breaches": state.breaches.to_dict(),
        "recentTargets": [] if state.recent_targets is None else [int(v) for v in state.recent_targets[0]],
        "recentReplicas": [] if state.recent_replicas is None else [int(v) for v in state.recent_replicas[0]],
        "decisions": state.decisions,
        "declaredCapacity": 0.0 if declared_capacity is None else float(declared_capacity),
        **({} if state.risk is None else {"risk": state.risk}),
    }


#: The posterior's count of consecutive steps without a forecast (spec.fallback's failureThreshold counts them).
FORECAST_FAILURES = "forecastFailures"


def forecast_failures(posterior: Mapping | None) -> int:
    """Consecutive steps without a forecast before this one, as the last step wrote them; 0 when absent or
    not a count (a hand-edited blob must not trigger, nor postpone, the fallback by more than one step)."""
    value = (posterior or {}).get(FORECAST_FAILURES, 0)
    return value if _whole(value) and value >= 0 else 0


def _read(posterior: Mapping, max_replicas: int | None) -> tuple[ControllerState | None, list[str]]:
    """The state in `posterior` if every field is plausible, else None and what is wrong, field by field."""
    capacity, breaches = posterior["capacity"], posterior["breaches"]
    fields = {**{f"capacity.{k}": capacity[k] for k in ("mu", "kappa", "alpha", "beta")},
              **{f"breaches.{k}": breaches[k] for k in ("a", "b")}}
    numbers = {k: _numbers(v) for k, v in fields.items()}
    # one workload: one finite number per field, or nothing else can be checked
    problems = [f"{k} {_shown(fields[k])} is not one finite number" for k, v in numbers.items()
                if v is None or v.shape != (1,)]
    if problems:
        return None, problems
    mu, kappa, alpha, beta, a, b = numbers.values()
    forgetting = breaches.get("forgetting", 0.995)
    recent = posterior.get("recentTargets") or []
    counts = posterior.get("recentReplicas") or []
    decisions = posterior.get("decisions", 0)
    risk = posterior.get("risk")
    checks = (
        # a proper NIG (finite variance needs alpha > 1), a Beta with some mass
        ("capacity.mu, capacity.kappa and capacity.beta must be > 0", _positive(mu, kappa, beta)),
        ("capacity.alpha must be > 1", bool(np.all(alpha > 1))),
        ("breaches.a and breaches.b must be >= 0, not both 0",
         bool(np.all(a >= 0) and np.all(b >= 0) and np.all(a + b > 0))),
        (f"breaches.forgetting {_shown(forgetting)} must be in (0, 1]", _real(forgetting) and 0 < forgetting <= 1),
        *((f"{key} must be a list of at most {MAX_RECENT_TARGETS} counts >= 0",
           isinstance(v, list) and len(v) <= MAX_RECENT_TARGETS and all(_whole(n) and n >= 0 for n in v))
          for key, v in (("recentTargets", recent), ("recentReplicas", counts))),
        (f"decisions {_shown(decisions)} must be a count >= 0", _whole(decisions) and decisions >= 0),
        (f"risk {_shown(risk)} must be in (0, 1)", risk is None or (_real(risk) and 0 < risk < 1)),
    )
    problems = [what for what, ok in checks if not ok]
    if problems:
        return None, problems
    targets = np.asarray([recent], dtype=np.int64) if recent else None
    if targets is not None and max_replicas is not None:
        targets = np.minimum(targets, int(max_replicas))
    return ControllerState(CapacityPosterior(mu, kappa, alpha, beta), BreachPosterior(a, b, float(forgetting)),
                           targets, int(decisions), None if risk is None else float(risk),
                           np.asarray([counts], dtype=np.int64) if counts else None), []


def _other_capacity(posterior: Mapping, capacity: CapacityPosterior, declared: float | None) -> str:
    """Why the posterior was not made for the capacity declared now (see `restore`), or "": the declared
    capacity it was written with (when kept) must be today's, and, a declared capacity never being learned,
    its mean must be it."""
    now = "none (learned)" if declared is None else f"{declared:g}"
    made_with = posterior.get("declaredCapacity")
    if made_with is not None:
        if not _real(made_with) or not math.isfinite(made_with) or made_with < 0:
            return f"declaredCapacity {_shown(made_with)} is not a capacity >= 0"
        made = "none (learned)" if made_with == 0 else f"{made_with:g}"
        if (made_with == 0) != (declared is None) or (
                declared is not None and not math.isclose(made_with, declared, rel_tol=1e-9)):
            return f"made for capacityPerReplica {made}, declared now {now}"
    mean = float(capacity.mu[0])
    if declared is not None and abs(mean - declared) > DECLARED_CAPACITY_TOLERANCE * declared:
        return f"capacity.mu {mean:g} is too far from the declared capacityPerReplica {now}"
    return ""


def _shown(value: object) -> str:
    """A value as a message shows it: its JSON-ish repr, cut short (a corrupt blob may hold anything)."""
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _numbers(value: object) -> np.ndarray | None:
    """A list of real numbers (or one number) as a finite float array, else None; strings and booleans are not
    numbers here, though numpy would convert them."""
    values = value if isinstance(value, list) else [value]
    if not values or not all(_real(v) for v in values):
        return None
    array = np.asarray(values, dtype=np.float64)
    return array if np.isfinite(array).all() else None


def _positive(*arrays: np.ndarray) -> bool:
    return all(bool(np.all(v > 0)) for v in arrays)


def _real(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _whole(value: object) -> bool:
    """An integer (not a boolean) a count can hold."""
    return isinstance(value, int) and not isinstance(value, bool) and abs(value) < 2**62


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
                  now: dt.datetime, generation: int | None) -> list[dict]:
    """Conditions with `type_` set, shaped like Kubernetes' metav1.Condition (what `kubectl wait
    --for=condition=`, kstatus and Argo CD read): type, status, a CamelCase `reason` (CONDITION_REASON, as the
    CRD requires), a message, `lastTransitionTime` (changed only when the status flips) and `observedGeneration`,
    the object's generation the condition was set from (omitted when unknown), so a reader can tell a
    condition about the current spec from one left by an older spec."""
    if not CONDITION_REASON.fullmatch(reason):
        raise ValueError(f"condition reason {reason!r} is not CamelCase (metav1.Condition's pattern)")
    value = "True" if status else "False"
    out = [dict(c) for c in conditions if c.get("type") != type_]
    previous = next((c for c in conditions if c.get("type") == type_), None)
    changed = previous is None or previous.get("status") != value
    out.append({
        "type": type_, "status": value, "reason": reason, "message": message[:1000],
        "lastTransitionTime": timestamp(now) if changed else previous.get("lastTransitionTime", timestamp(now)),
        **({} if generation is None else {"observedGeneration": int(generation)}),
    })
    order = [READY, FORECAST_READY, ABLE_TO_SCALE, SCALING_LIMITED, "InvalidSpec"]
    return sorted(out, key=lambda c: order.index(c["type"]) if c["type"] in order else len(order))
