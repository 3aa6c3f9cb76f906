"""Issue 19's "Done when": a staged rollout over 200 simulated gateways, 10 % of which fail
the new version, halts at stage 2 by itself; and the same fleet with no failures goes
through every stage to the end (so the halt is the failures', not the test's).

The gateways are simulated at the ingest (`rollout_fleet.py` says why and how): they take
the `update` commands the job created through the devices room, and report every
`update_state` and their running version through the real ingest. Nobody calls the API
after the rollout is made: the `rollouts` job alone advances, asks and halts.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from kenshin.server import schema as s
from kenshin.server.rollouts.service import run_rollouts
from kenshin.server.schema import utcnow

from .conftest import login, subscribe_webhook
from .rollout_fleet import SimFleet, claimed_gateways

GATEWAYS = 200
SOAK_S = 600
WINDOW_S = 1800


def _gateways_by_stage(client, rollout_id: int) -> dict[int, list[int]]:
    stages: dict[int, list[int]] = {}
    cursor = None
    while True:
        params = {"limit": 500} | ({"cursor": cursor} if cursor else {})
        response = client.get(f"/api/v1/rollouts/{rollout_id}/gateways", params=params)
        assert response.status_code == 200, response.text
        page = response.json()
        for item in page["items"]:
            stages.setdefault(item["stage"], []).append(item["gateway_id"])
        cursor = page["next_cursor"]
        if cursor is None:
            return stages


@pytest.mark.parametrize("bad_in_stage_2", [2, 0], ids=["10pct-failing", "none-failing"])
def test_a_rollout_over_200_gateways_halts_at_stage_2_by_itself(
    engine, client, world, bad_in_stage_2
):
    serials = claimed_gateways(engine, world.tenant_a, GATEWAYS)
    subscribe_webhook(engine, world.tenant_a, ["event"])
    operator = login(client, "operator@a.test")
    made = operator.post(
        "/api/v1/rollouts",
        json={"version": "2.0.0", "soak_s": SOAK_S, "window_s": WINDOW_S,
              "failure_threshold_pct": 5},
    )  # fmt: skip
    assert made.status_code == 201, made.text
    rollout_id = made.json()["id"]
    assert [st["gateways"] for st in made.json()["stages"]] == [2, 18, 80, 100]

    # 10 % of the fleet fails the new version: two of stage 2's gateways, the other 18
    # in stages 3 and 4 (stage 1, the canaries, is clean, so the halt is stage 2's).
    by_stage = _gateways_by_stage(operator, rollout_id)
    bad = set(by_stage[2][:bad_in_stage_2])
    if bad_in_stage_2:
        bad |= set((by_stage[3] + by_stage[4])[: GATEWAYS // 10 - bad_in_stage_2])
        assert len(bad) == GATEWAYS // 10
    fleet = SimFleet(engine, serials, fails=lambda serial: serial in {serials[g] for g in bad})

    now = utcnow()
    states = []
    for _ in range(12):  # a stage a round at most: far more rounds than stages
        fleet.take_commands(now)
        now += timedelta(seconds=SOAK_S + 1)
        run_rollouts(engine, now)
        rollout = operator.get(f"/api/v1/rollouts/{rollout_id}").json()
        states.append((rollout["state"], rollout["stage"]))
        if rollout["state"] != "running":
            break

    asked = {g for g, sn in serials.items() if sn in fleet.asked}
    for args in (a for each in fleet.asked.values() for a in each):
        assert args["version"] == "2.0.0" and 0 <= args["delay_s"] <= WINDOW_S
    if not bad_in_stage_2:
        assert states[-1] == ("done", 4), states
        assert rollout["counts"] == {"healthy": GATEWAYS}
        assert len(asked) == GATEWAYS
        assert len({a["delay_s"] for each in fleet.asked.values() for a in each}) > 50  # spread
        return

    assert states[-1] == ("halted", 2), states
    assert "stage 2: 2 of 18" in rollout["reason"]
    assert asked == set(by_stage[1]) | set(by_stage[2])  # stages 3 and 4 never asked
    assert not asked & (bad - set(by_stage[2]))
    assert rollout["stages"][1]["states"] == {"healthy": 16, "rolled_back": 2}
    assert rollout["counts"] == {"healthy": 18, "rolled_back": 2, "pending": 180}
    failed = operator.get(
        f"/api/v1/rollouts/{rollout_id}/gateways", params={"state": "rolled_back"}
    ).json()["items"]
    assert {g["gateway_id"] for g in failed} == set(by_stage[2][:2])
    assert {g["from_version"] for g in failed} == {"1.0.0"}

    # Halted stays halted: more rounds of the job ask nobody.
    for _ in range(3):
        now += timedelta(seconds=SOAK_S + 1)
        assert run_rollouts(engine, now).asked == 0
    assert fleet.take_commands(now) == 0
    with engine.connect() as conn:
        events = (
            conn.execute(select(s.events.c.detail).where(s.events.c.code == "rollout_halted"))
            .scalars()
            .all()
        )
        hooked = (
            conn.execute(select(s.outbox.c.body).where(s.outbox.c.kind == "event")).scalars().all()
        )
    assert [e["stage"] for e in events] == [2]
    assert [b["detail"]["rollout_id"] for b in hooked if b["code"] == "rollout_halted"] == [
        rollout_id
    ]
