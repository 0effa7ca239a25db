"""A checkpoint replaced at the same path (what the chart's training CronJob writes) is served from the next
step, without a restart; a replacement that fails to load or does not fit the spec leaves the previous
version served, with CheckpointCurrent=False and one Warning Event saying why.

Real checkpoint files (tests/checkpoints.py trains tiny ones) on the Reconciler, against the kmock emulator.
"""

from __future__ import annotations

import asyncio
import os
import shutil

import pytest

from harmony.operator.spec import served_checkpoint
from harmony.telemetry.prometheus import TelemetryWindow
from tests.checkpoints import tiny_checkpoint, tiny_frame
from tests.operator_support import HA, add_autoscaler, add_deployment, cluster, condition, make_reconciler, obj

NAMES, LEVELS = ("requests", "gpu"), (1, 2)
INDICATORS = [{"name": "requests", "query": "sum(rate(requests_total[1m]))", "level": 1, "demand": True},
              {"name": "gpu", "query": "avg(DCGM_FI_DEV_GPU_UTIL)", "level": 2}]


@pytest.fixture(scope="module")
def versions(tmp_path_factory):
    """Files to put at the served path: two good versions, one of other indicators, one not a checkpoint."""
    root = tmp_path_factory.mktemp("versions")
    garbage = root / "garbage.ckpt"
    garbage.write_bytes(b"half a checkpoint, cut off by a full volume")
    return {"v1": tiny_checkpoint(root / "v1.ckpt", NAMES, LEVELS),
            "v2": tiny_checkpoint(root / "v2.ckpt", NAMES, LEVELS),
            "other": tiny_checkpoint(root / "other.ckpt", ("requests", "memory"), LEVELS),
            "garbage": garbage}


def put(version, served, step: int) -> None:
    """Copy a version to the served path, with a modification time of its own (a coarse file system clock
    could otherwise give two writes the same one)."""
    shutil.copyfile(version, served)
    stamp = 1_800_000_000_000_000_000 + step * 1_000_000_000
    os.utime(served, ns=(stamp, stamp))


def warnings(k8s) -> list[dict]:
    return [o.raw for (res, _, _), o in k8s.objects.items()
            if getattr(res, "plural", "") == "events" and o.raw.get("reason") == "CheckpointRejected"]


@pytest.mark.asyncio
async def test_a_new_checkpoint_is_served_and_a_bad_one_leaves_the_previous_version_serving(versions, tmp_path):
    served = tmp_path / "model.ckpt"
    put(versions["v1"], served, 1)
    frame = tiny_frame(NAMES, LEVELS, seed=2)

    async with cluster() as (k8s, url):
        add_deployment(k8s, replicas=2)
        add_autoscaler(k8s, intervalSeconds=30, indicators=INDICATORS, capacityPerReplica=5.0,
                       model={"checkpoint": str(served)}, sla={"maxBreachProbability": 0.05, "coldStartSeconds": 30})
        reconciler = make_reconciler(url, lambda spec, now: TelemetryWindow(frame, False, ""))
        ha = obj(k8s, HA, "default", "llm")
        uid = ha["metadata"]["uid"]
        status = None

        async def step():
            nonlocal status
            outcome = await asyncio.to_thread(reconciler.reconcile, "default", "llm", uid, 1, ha["spec"], status)
            assert outcome.error is None, outcome.error
            assert condition(outcome.status, "ForecastReady")["status"] == "True"
            status = outcome.status
            return reconciler.forecasters[uid].predictor, condition(outcome.status, "CheckpointCurrent")

        first, current = await step()
        assert current["status"] == "True" and first is served_checkpoint(str(served))

        put(versions["v2"], served, 2)  # a new version: taken up at the next step
        second, current = await step()
        assert second is not first and current["status"] == "True"

        for bad, why, at in ((versions["garbage"], "is not a harmony checkpoint", 3),
                             (versions["other"], "was trained on indicators ['requests', 'memory']", 4)):
            put(bad, served, at)
            for _ in range(2):  # kept over several steps; one Event per problem, not one per step
                predictor, current = await step()
                assert predictor is second
                assert current["status"] == "False" and current["reason"] == "CheckpointRejected"
                assert why in current["message"] and "serving the version of" in current["message"]
        assert [why in e["message"] for e in warnings(k8s) for why in ("not a harmony", "trained on")].count(True) == 2
        assert all(e["type"] == "Warning" for e in warnings(k8s))

        served.unlink()  # gone for a moment (a job replacing it): still the version accepted last
        predictor, current = await step()
        assert predictor is second and current["status"] == "False"

        put(versions["v1"], served, 5)  # a good file again: served, and the condition clears
        third, current = await step()
        assert third is not second and current["status"] == "True" and current["reason"] == "CheckpointServed"


@pytest.mark.asyncio
async def test_a_first_checkpoint_that_does_not_fit_is_an_invalid_spec(versions, tmp_path):
    """With no version accepted before there is nothing to keep serving: the spec is at fault, as before."""
    served = tmp_path / "never-good.ckpt"
    put(versions["other"], served, 1)
    async with cluster() as (k8s, url):
        add_deployment(k8s, replicas=2)
        add_autoscaler(k8s, intervalSeconds=30, indicators=INDICATORS, capacityPerReplica=5.0,
                       model={"checkpoint": str(served)})
        reconciler = make_reconciler(url, lambda spec, now: TelemetryWindow(None, True, "unused"))
        ha = obj(k8s, HA, "default", "llm")
        outcome = await asyncio.to_thread(reconciler.reconcile, "default", "llm", ha["metadata"]["uid"], 1,
                                          ha["spec"], None)
        assert outcome.error.startswith("spec.indicators") and "trained on indicators" in outcome.error
        assert condition(outcome.status, "InvalidSpec")["status"] == "True"
