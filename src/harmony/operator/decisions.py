"""The decisions board: the latest decision of every HarmonyAutoscaler this operator process serves, in memory.

The reconciler posts each step's counts from its report stage (the one place that writes here); whatever
serves harmony's decisions to another autoscaler reads them: the KEDA external scaler
(harmony.operator.keda). Reading this process's memory, rather than the object's status through the API
server or `harmony_recommended_replicas` through Prometheus, is what keeps that path as current as the step
itself: no scrape interval, no adapter query, no API round trip.

A reader tells three cases apart, because each calls for a different answer:
- not served here: no daemon of this process runs for the object (never created, deleted, another shard's,
  or this replica is a standby peer under kopf peering);
- served, no decision yet: its daemon has started (app.py says so with `serving`) and no step has posted;
- decided at `PostedDecision.time`: how old is too old is the reader's call (it knows what it serves), from
  the decision's own interval.

A post also marks the object served, so a Reconciler used without app.py's daemons (tests, embedders) is read
the same way. Thread-safe: steps run in the operator's worker threads, readers in gRPC's; a reader that waits
for a change (a stream) takes the board's `generation`, reads, and blocks in `wait_for_change` until the
board changes (every post, `serving`, `stopped`) or `wake` is called: a change between its read and its
wait is not lost.
"""

from __future__ import annotations

import datetime as dt
import threading
from dataclasses import dataclass


@dataclass(frozen=True)
class PostedDecision:
    """One step's counts. recommended: the risk-optimal count before the step's own step and stabilisation
    rules (`StepResult.target`, status.recommendedReplicas, `harmony_recommended_replicas`). desired: the count
    after them (`StepResult.replicas`, status.desiredReplicas: what Scale mode writes). time: the step's clock
    when it decided. interval_s: the object's spec.intervalSeconds, the cadence the next post is due at.
    mode: spec.mode, `Recommend` or `Scale` (whether harmony writes the count itself)."""

    recommended: int
    desired: int
    time: dt.datetime
    interval_s: float
    mode: str = "Recommend"

    def age_s(self, now: dt.datetime) -> float:
        return (now - self.time).total_seconds()


@dataclass(frozen=True)
class Entry:
    """What the board holds for one served object: its latest decision (None: none yet)."""

    decision: PostedDecision | None


class DecisionBoard:
    def __init__(self) -> None:
        self._entries: dict[tuple[str, str], Entry] = {}
        self._changed = threading.Condition()
        self._generation = 0  # advances on every change and every wake

    @property
    def generation(self) -> int:
        """A token for `wait_for_change`: read it before reading an entry, so no change after the read is missed."""
        with self._changed:
            return self._generation

    def serving(self, namespace: str, name: str) -> None:
        """This process's daemon for the object has started: readers hear "no decision yet" until it posts."""
        with self._changed:
            previous = self._entries.get((namespace, name))
            self._entries[namespace, name] = previous or Entry(None)
            self._advance()

    def stopped(self, namespace: str, name: str) -> None:
        """The daemon has stopped (the object deleted, the operator stopping, peering pausing this replica):
        the object is no longer served here, and its last decision must not be served as if it were."""
        with self._changed:
            self._entries.pop((namespace, name), None)
            self._advance()

    def post(self, namespace: str, name: str, decision: PostedDecision) -> None:
        with self._changed:
            self._entries[namespace, name] = Entry(decision)
            self._advance()

    def read(self, namespace: str, name: str) -> Entry | None:
        """The object's entry; None when it is not served here."""
        with self._changed:
            return self._entries.get((namespace, name))

    def wait_for_change(self, generation: int, timeout_s: float) -> int:
        """Block until the board changed (any object: a reader re-reads its own) or was woken since
        `generation`, or `timeout_s` passes; return the generation then."""
        with self._changed:
            self._changed.wait_for(lambda: self._generation != generation, timeout_s)
            return self._generation

    def wake(self) -> None:
        """Wake every waiter (a stream whose client went away stops waiting at once instead of at its timeout)."""
        with self._changed:
            self._advance()

    def _advance(self) -> None:
        self._generation += 1
        self._changed.notify_all()
