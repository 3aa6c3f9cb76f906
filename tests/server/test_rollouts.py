"""The rollouts room over HTTP and through the ingest: making a rollout (cohorts, stages,
the release checked against the update repository), moving it by hand, the tenant wall,
each gateway's update state from its reports (forward only), and the job's schedule
(by hand without a soak, done at the end, a silent gateway asked again)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from kenshin.server import ingest
from kenshin.server import schema as s
from kenshin.server.jobs import server_jobs
from kenshin.server.rollouts import service
from kenshin.server.rollouts.service import run_rollouts
from kenshin.server.schema import utcnow
from kenshin.server.security import CredentialBox
from kenshin.wire import Event, encode_publish

from .conftest import assert_problem, login
from .rollout_fleet import KEY, SimFleet, claimed_gateways


def _update_commands(engine) -> list:
    with engine.connect() as conn:
        return conn.execute(
            select(s.commands).where(s.commands.c.name == "update").order_by(s.commands.c.id)
        ).all()


def test_a_rollout_is_made_read_and_moved_by_operators_and_read_by_viewers(
    engine, client, new_client, world
):
    claimed_gateways(engine, world.tenant_a, 10, "GW-A")
    claimed_gateways(engine, world.tenant_b, 3, "GW-B")
    operator = login(client, "operator@a.test")
    made = operator.post(
        "/api/v1/rollouts", json={"version": "1.2.0", "stages": [10, 50, 100], "window_s": 0}
    )
    assert made.status_code == 201, made.text
    rollout = made.json()
    assert (rollout["state"], rollout["stage"], rollout["counts"]) == (
        "running",
        1,
        {"pending": 10},
    )
    assert [st["gateways"] for st in rollout["stages"]] == [1, 4, 5]
    asked = _update_commands(engine)  # stage 1 is asked at once
    assert [c.args for c in asked] == [{"version": "1.2.0", "delay_s": 0}]
    rollout_id = rollout["id"]

    viewer = login(new_client(), "viewer@a.test")
    assert [r["id"] for r in viewer.get("/api/v1/rollouts").json()["items"]] == [rollout_id]
    listed = viewer.get(f"/api/v1/rollouts/{rollout_id}/gateways", params={"limit": 3}).json()
    assert len(listed["items"]) == 3 and listed["next_cursor"]
    rest = viewer.get(
        f"/api/v1/rollouts/{rollout_id}/gateways", params={"cursor": listed["next_cursor"]}
    ).json()
    assert len(rest["items"]) == 7 and rest["next_cursor"] is None
    assert_problem(viewer.post("/api/v1/rollouts", json={"version": "1.2.1"}), 403)
    assert_problem(viewer.post(f"/api/v1/rollouts/{rollout_id}/pause"), 403)

    def move(verb: str, status: int = 200, **body) -> dict:
        answer = operator.post(f"/api/v1/rollouts/{rollout_id}/{verb}", json=body or None)
        assert answer.status_code == status, answer.text
        return answer.json()

    assert move("pause", reason="Friday")["state"] == "paused"
    assert "paused" in move("pause", 409)["detail"]
    assert move("resume")["state"] == "running"
    move("resume", 409)
    advanced = move("advance")
    assert (advanced["state"], advanced["stage"]) == ("running", 2)
    assert len(_update_commands(engine)) == 5  # stage 2's gateways asked at once too
    move("advance")
    assert "last stage" in move("advance", 409)["detail"]
    aborted = move("abort", reason="wrong build")
    assert (aborted["state"], aborted["reason"]) == ("aborted", "wrong build")
    move("resume", 409)
    move("advance", 409)

    # The other tenant sees none of it, and cannot touch it.
    other = login(new_client(), "admin@b.test")
    assert other.get("/api/v1/rollouts").json()["items"] == []
    assert_problem(other.get(f"/api/v1/rollouts/{rollout_id}"), 404)
    assert_problem(other.get(f"/api/v1/rollouts/{rollout_id}/gateways"), 404)
    assert_problem(other.post(f"/api/v1/rollouts/{rollout_id}/pause"), 404)
    with engine.connect() as conn:
        audited = conn.execute(
            select(s.audit_log.c.action).where(s.audit_log.c.action.like("rollout.%"))
        ).scalars()
        assert set(audited) == {"rollout.create", "rollout.pause", "rollout.resume",
                                "rollout.advance", "rollout.abort"}  # fmt: skip


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ({"version": "1/2"}, "not a release version"),
        ({"version": "1.0", "stages": [10, 5, 100]}, "rise"),
        ({"version": "1.0", "stages": [10, 50]}, "end at 100"),
        ({"version": "1.0", "gateway_ids": [999_999]}, "not gateways of this tenant"),
    ],
)
def test_a_rollout_that_cannot_be_made_is_a_422_saying_why(engine, client, world, body, says):
    claimed_gateways(engine, world.tenant_a, 2)
    answer = login(client, "operator@a.test").post("/api/v1/rollouts", json=body)
    assert says in assert_problem(answer, 422)["detail"]


def test_a_cohort_by_percent_is_stable_and_explicit_ids_narrow_it(engine, client, world):
    ids = sorted(claimed_gateways(engine, world.tenant_a, 40))
    operator = login(client, "operator@a.test")

    def cohort(**body) -> set[int]:
        made = operator.post("/api/v1/rollouts", json={"version": "1.0", **body}).json()
        items = operator.get(f"/api/v1/rollouts/{made['id']}/gateways").json()["items"]
        return {i["gateway_id"] for i in items}

    half = cohort(percent=50)
    assert 8 <= len(half) <= 32 and half == cohort(percent=50)  # the same gateways again
    assert cohort(gateway_ids=ids[:5]) == set(ids[:5])
    assert cohort(gateway_ids=ids[:5], percent=50) == set(ids[:5]) & half


def test_a_cohort_by_tags_takes_the_gateways_carrying_every_tag(engine, client, new_client, world):
    ids = sorted(claimed_gateways(engine, world.tenant_a, 6))
    operator = login(client, "operator@a.test")
    for gateway_id, tags in zip(
        ids, (["pilot", "tokyo"], ["pilot"], ["tokyo"], ["pilot", "tokyo", "pilot"]), strict=False
    ):
        answer = operator.put(f"/api/v1/gateways/{gateway_id}/tags", json={"tags": tags})
        assert answer.status_code == 200, answer.text
        assert answer.json()["tags"] == sorted(set(tags))
    assert operator.get(f"/api/v1/gateways/{ids[5]}").json()["tags"] == []

    def cohort(**body) -> set[int]:
        made = operator.post("/api/v1/rollouts", json={"version": "1.0", **body})
        assert made.status_code == 201, made.text
        items = operator.get(f"/api/v1/rollouts/{made.json()['id']}/gateways").json()["items"]
        return {i["gateway_id"] for i in items}

    assert cohort(tags=["pilot", "tokyo"]) == {ids[0], ids[3]}
    assert cohort(tags=["pilot"], gateway_ids=ids[1:]) == {ids[1], ids[3]}
    assert_problem(
        operator.post("/api/v1/rollouts", json={"version": "1.0", "tags": ["osaka"]}), 422
    )
    bad = operator.put(f"/api/v1/gateways/{ids[0]}/tags", json={"tags": ["no spaces"]})
    assert_problem(bad, 422)
    viewer = login(new_client(), "viewer@a.test")
    assert_problem(viewer.put(f"/api/v1/gateways/{ids[0]}/tags", json={"tags": []}), 403)
    theirs = login(new_client(), "admin@b.test")
    assert_problem(theirs.put(f"/api/v1/gateways/{ids[0]}/tags", json={"tags": []}), 404)


def test_the_version_must_be_a_release_of_the_update_repository(
    app, engine, client, world, tmp_path
):
    from kenshin.updates.archive import build_archive
    from kenshin.updates.keys import KeyDirs
    from kenshin.updates.repository import Repository

    claimed_gateways(engine, world.tenant_a, 2)
    keys = KeyDirs(tmp_path / "offline", tmp_path / "online", tmp_path / "recipe-keys")
    repo = Repository.init(tmp_path / "repo", keys)
    archive = tmp_path / "1.4.2.tar"
    archive.write_bytes(build_archive({"kenshin/__init__.py": b"VERSION = '1.4.2'\n"}))
    repo.add_release(archive, "1.4.2")
    app.state.settings = app.state.settings.model_copy(update={"updates_dir": repo.path})
    operator = login(client, "operator@a.test")
    refused = operator.post("/api/v1/rollouts", json={"version": "1.4.3"})
    assert "no release '1.4.3' (newest: 1.4.2)" in assert_problem(refused, 422)["detail"]
    assert operator.post("/api/v1/rollouts", json={"version": "1.4.2"}).status_code == 201


def _report(engine, serial: str, **detail) -> None:
    message = Event("update_state", int(utcnow().timestamp()), detail)
    with engine.begin() as conn:
        assert ingest.handle(conn, *encode_publish(message, serial)).kind == "event"


def test_a_gateways_state_only_moves_forward_whatever_order_its_reports_come_in(
    engine, client, world
):
    serials = claimed_gateways(engine, world.tenant_a, 1)
    (serial,) = serials.values()
    operator = login(client, "operator@a.test")
    rollout_id = operator.post("/api/v1/rollouts", json={"version": "2.0"}).json()["id"]

    def state() -> dict:
        url = f"/api/v1/rollouts/{rollout_id}/gateways"
        return operator.get(url).json()["items"][0]

    _report(engine, serial, version="2.0", state="installed", from_version="1.0", reason="")
    _report(engine, serial, version="2.0", state="downloading", from_version="1.0", reason="")
    assert state()["state"] == "installed"  # the late "downloading" changed nothing
    _report(engine, serial, version="3.0", state="failed", reason="x")  # no rollout of 3.0
    _report(engine, serial, version="2.0", state="bogus")
    assert state()["state"] == "installed"
    _report(engine, serial, version="2.0", state="healthy", from_version="1.0", reason="")
    _report(engine, serial, version="2.0", state="rolled_back", from_version="1.0",
            reason="crashed 3 times")  # fmt: skip
    got = state()
    assert (got["state"], got["reason"], got["from_version"]) == (
        "rolled_back", "crashed 3 times", "1.0"
    )  # fmt: skip
    with engine.connect() as conn:
        events = (
            conn.execute(select(s.events.c.severity).where(s.events.c.code == "gw_update_state"))
            .scalars()
            .all()
        )
    assert events.count("warning") == 2  # the failure and the rollback, for the event list


def test_without_a_soak_stages_wait_for_a_hand_and_the_last_one_settled_is_done(
    engine, client, world
):
    serials = claimed_gateways(engine, world.tenant_a, 4)
    operator = login(client, "operator@a.test")
    made = operator.post("/api/v1/rollouts", json={"version": "2.0", "stages": [50, 100]})
    rollout_id = made.json()["id"]
    fleet = SimFleet(engine, serials)
    now = utcnow()
    for _ in range(3):
        fleet.take_commands(now)
        now += timedelta(days=1)
        run_rollouts(engine, now)
    got = operator.get(f"/api/v1/rollouts/{rollout_id}").json()
    assert (got["state"], got["stage"], got["counts"]) == (
        "running",
        1,
        {"healthy": 2, "pending": 2},
    )
    operator.post(f"/api/v1/rollouts/{rollout_id}/advance")
    fleet.take_commands(now)
    run_rollouts(engine, now)
    got = operator.get(f"/api/v1/rollouts/{rollout_id}").json()
    assert (got["state"], got["counts"]) == ("done", {"healthy": 4})
    with engine.connect() as conn:
        done = conn.execute(select(s.events.c.detail).where(s.events.c.code == "rollout_done"))
        assert [d["rollout_id"] for d in done.scalars()] == [rollout_id]


def test_a_gateway_silent_past_its_commands_life_is_asked_again(engine, client, world):
    claimed_gateways(engine, world.tenant_a, 1)
    operator = login(client, "operator@a.test")
    operator.post("/api/v1/rollouts", json={"version": "2.0", "window_s": 60})
    assert len(_update_commands(engine)) == 1
    assert run_rollouts(engine, utcnow() + timedelta(hours=1)).asked == 0
    later = utcnow() + service.COMMAND_TTL + timedelta(seconds=61)
    assert run_rollouts(engine, later).asked == 1
    assert len(_update_commands(engine)) == 2


def test_the_rollouts_job_is_one_of_the_servers_jobs(settings):
    assert "rollouts" in [job.name for job in server_jobs(settings, CredentialBox(KEY))]


@pytest.mark.parametrize(
    "args",
    [{}, {"version": "2.0"}, {"version": "2.0", "delay_s": 86_401}, {"version": 2, "delay_s": 0},
     {"version": "2.0", "delay_s": True}],
)  # fmt: skip
def test_an_update_command_by_hand_needs_the_contracts_args(engine, client, world, args):
    (gateway_id,) = claimed_gateways(engine, world.tenant_a, 1)
    operator = login(client, "operator@a.test")
    answer = operator.post(
        f"/api/v1/gateways/{gateway_id}/commands", json={"name": "update", "args": args}
    )
    assert "update" in assert_problem(answer, 422)["detail"]
    good = {"name": "update", "args": {"version": "2.0", "delay_s": 0}}
    assert operator.post(f"/api/v1/gateways/{gateway_id}/commands", json=good).status_code == 201
