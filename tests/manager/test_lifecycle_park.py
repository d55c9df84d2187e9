"""Every transition of the parked states (manager/voxgate_manager/lifecycle/DESIGN.md): ready -> parking -> parked ->
waking -> ready, parked -> stopped, and how requests, stops and crashes meet them. No I/O."""

from __future__ import annotations

from voxgate_manager.lifecycle.machine import Admit, EffectKind, Lifecycle, Limits, State, Wait


def kinds(m: Lifecycle) -> list[EffectKind]:
    return [e.kind for e in m.take_effects()]


def parkable(now: float = 0.0, **kw) -> Lifecycle:
    base = dict(concurrency=2, queue_size=8, idle_timeout_s=10, drain_timeout_s=5, retry_after_s=3, backoff_s=2,
                backoff_max_s=16, parked_timeout_s=100)
    base.update(kw)
    m = Lifecycle(Limits(**base))
    t, _ = m.arrive(now)
    m.started(m.attempt, now)
    m.parkable = True
    assert m.poll(t, now) == Admit()
    m.finish(now)
    m.take_effects()
    m.take_transitions()
    return m


def parked(now: float = 20.0, **kw) -> Lifecycle:
    m = parkable(**kw)
    m.tick(now)
    m.parked(now)
    m.take_effects()
    m.take_transitions()
    assert m.state is State.PARKED
    return m


def test_idle_parks_a_parkable_model_instead_of_stopping_it():
    m = parkable()
    m.tick(9.9)
    assert m.state is State.READY and kinds(m) == []
    m.tick(10.0)
    assert m.state is State.PARKING
    assert kinds(m) == [EffectKind.PARK]
    m.parked(12.0)
    assert m.state is State.PARKED
    assert [(t.old, t.new) for t in m.take_transitions()] == [(State.READY, State.PARKING), (State.PARKING, State.PARKED)]


def test_idle_stops_a_model_whose_server_cannot_park():
    m = parkable()
    m.parkable = False
    m.tick(10.0)
    assert m.state is State.DRAINING and kinds(m) == [EffectKind.STOP]


def test_request_while_parked_wakes_it_once_and_all_are_admitted_when_woken():
    m = parked(concurrency=4)
    tickets = [m.arrive(30.0) for _ in range(4)]
    assert all(d == Wait() for _, d in tickets)
    assert m.state is State.WAKING
    assert kinds(m).count(EffectKind.UNPARK) == 1
    m.woken(31.0)
    assert m.state is State.READY
    assert [m.poll(t, 31.0) for t, _ in tickets] == [Admit()] * 4


def test_requests_arriving_while_parking_are_held_then_wake_it_right_after():
    m = parkable()
    m.tick(10.0)
    m.take_effects()
    t, d = m.arrive(10.5)
    assert d == Wait() and m.state is State.PARKING
    assert kinds(m) == []  # no second park, no wake yet
    m.parked(11.0)
    assert m.state is State.WAKING and kinds(m) == [EffectKind.UNPARK]
    m.woken(12.0)
    assert m.poll(t, 12.0) == Admit()


def test_admin_park_and_wake():
    m = parkable()
    assert m.request_park(1.0)
    assert m.state is State.PARKING and kinds(m) == [EffectKind.PARK]
    assert not m.request_park(1.0)  # already parking
    m.parked(2.0)
    assert m.request_unpark(3.0)
    assert m.state is State.WAKING and kinds(m) == [EffectKind.UNPARK]
    assert not m.request_unpark(3.0)
    m.woken(4.0)
    assert m.state is State.READY
    # the idle clock starts again at the wake
    assert m.idle_deadline() == 14.0


def test_admin_park_refused_when_not_parkable_or_not_ready():
    m = parkable()
    m.parkable = False
    assert not m.request_park(1.0) and m.state is State.READY
    stopped = Lifecycle(Limits())
    stopped.parkable = True
    assert not stopped.request_park(1.0) and stopped.state is State.STOPPED


def test_park_failed_returns_to_ready_and_unsupported_falls_back_to_stop():
    m = parkable()
    m.tick(10.0)
    m.take_effects()
    m.park_failed(10.5, "busy", supported=True)
    assert m.state is State.READY and m.parkable
    m.tick(10.6)  # still idle: parks again
    assert m.state is State.PARKING
    m.take_effects()
    m.park_failed(11.0, "cannot park", supported=False)
    assert m.state is State.READY and not m.parkable
    m.tick(11.1)
    assert m.state is State.DRAINING and kinds(m) == [EffectKind.STOP]


def test_parked_model_stops_after_parked_timeout():
    m = parked(now=20.0)
    assert m.parked_deadline() == 120.0
    m.tick(119.0)
    assert m.state is State.PARKED and kinds(m) == []
    m.tick(120.0)
    assert m.state is State.DRAINING and m.stop_reason == "parked_timeout"
    assert kinds(m) == [EffectKind.STOP]
    m.stopped(121.0)
    assert m.state is State.STOPPED


def test_parked_timeout_zero_keeps_it_parked():
    m = parked(parked_timeout_s=0)
    m.tick(1e9)
    assert m.state is State.PARKED and m.parked_deadline() is None


def test_wake_failed_stops_it_and_a_waiting_request_restarts_it():
    m = parked()
    t, _ = m.arrive(30.0)
    m.take_effects()
    m.wake_failed(31.0, "restore failed")
    assert m.state is State.DRAINING and kinds(m) == [EffectKind.STOP]
    m.stopped(32.0)
    # counted as a failure; the first restarts at once for the request that waits
    assert m.failures == 1
    assert m.state is State.STARTING and EffectKind.START in kinds(m)
    assert m.poll(t, 32.0) == Wait()
    m.started(m.attempt, 40.0)
    assert m.poll(t, 40.0) == Admit()


def test_unload_while_parked_or_parking_or_waking_stops_at_once():
    for setup in ("parked", "parking", "waking"):
        m = parked() if setup != "parking" else parkable()
        if setup == "parking":
            m.tick(10.0)
        elif setup == "waking":
            m.request_unpark(30.0)
        m.take_effects()
        assert m.request_stop(31.0, "unload")
        assert m.state is State.DRAINING and kinds(m) == [EffectKind.STOP], setup
        m.parked(31.5)
        m.woken(31.5)  # a park or wake answer that comes late changes nothing
        assert m.state is State.DRAINING
        m.stopped(32.0)
        assert m.state is State.STOPPED


def test_crash_while_parked_fails_and_a_waiting_request_restarts():
    m = parked()
    m.exited(30.0, "exit code 137")
    assert m.state is State.FAILED
    t, d = m.arrive(30.5)
    assert m.state is State.STARTING and d == Wait()


def test_shutdown_while_parked_stops():
    m = parked()
    m.shutdown(30.0)
    assert m.state is State.DRAINING and EffectKind.STOP in kinds(m)
