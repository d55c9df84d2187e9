"""Every transition of the pure lifecycle machine (manager/voxgate_manager/lifecycle/DESIGN.md), with no I/O."""

from __future__ import annotations

import pytest

from voxgate_manager.lifecycle.machine import Admit, EffectKind, Lifecycle, Limits, Reject, State, Wait


def kinds(m: Lifecycle) -> list[EffectKind]:
    return [e.kind for e in m.take_effects()]


def machine(**kw) -> Lifecycle:
    base = dict(concurrency=2, queue_size=8, idle_timeout_s=10, drain_timeout_s=5, retry_after_s=3, backoff_s=2, backoff_max_s=16)
    base.update(kw)
    return Lifecycle(Limits(**base))


def ready_machine(now: float = 0.0, **kw) -> Lifecycle:
    m = machine(**kw)
    t, d = m.arrive(now)
    m.started(m.attempt, now)
    assert m.poll(t, now) == Admit()
    m.finish(now)
    m.take_effects()
    m.take_transitions()
    return m


def test_stopped_to_starting_on_request_emits_exactly_one_start():
    m = machine(queue_size=50)
    decisions = [m.arrive(0.0) for _ in range(20)]
    assert m.state is State.STARTING
    effects = m.take_effects()
    assert [e.kind for e in effects].count(EffectKind.START) == 1
    assert all(d == Wait() for _, d in decisions)
    assert m.waiting == 20


def test_starting_to_ready_admits_waiters_up_to_concurrency_fifo():
    m = machine(queue_size=50)
    tickets = [m.arrive(0.0)[0] for _ in range(5)]
    m.take_effects()
    m.started(m.attempt, 1.0)
    assert m.state is State.READY
    assert EffectKind.WAKE in kinds(m)
    # the last ticket is not among the first two: it waits even if polled first
    assert m.poll(tickets[4], 1.0) == Wait()
    assert m.poll(tickets[0], 1.0) == Admit()
    assert m.poll(tickets[1], 1.0) == Admit()
    assert m.poll(tickets[2], 1.0) == Wait()
    assert m.inflight == 2
    m.finish(2.0)
    assert EffectKind.WAKE in kinds(m)
    assert m.poll(tickets[2], 2.0) == Admit()


def test_all_twenty_requests_are_served_after_one_start():
    m = machine(queue_size=50)
    tickets = [m.arrive(0.0)[0] for _ in range(20)]
    assert kinds(m).count(EffectKind.START) == 1
    m.started(m.attempt, 1.0)
    served = 0
    pending = list(tickets)
    while pending:
        for t in list(pending):
            if m.poll(t, 1.0) == Admit():
                pending.remove(t)
                served += 1
                m.finish(1.0)
    assert served == 20
    assert kinds(m).count(EffectKind.START) == 0


def test_ready_admits_immediately_when_free():
    m = ready_machine()
    t, d = m.arrive(1.0)
    assert d == Admit()
    assert m.inflight == 1 and m.waiting == 0


def test_queue_full_rejects_with_429():
    m = machine(queue_size=2)
    m.arrive(0.0)
    m.arrive(0.0)
    t, d = m.arrive(0.0)
    assert t is None
    assert isinstance(d, Reject) and d.status == 429 and d.code == "queue_full"


def test_ready_to_draining_to_stopped_on_idle_and_not_before():
    m = ready_machine(now=0.0)
    assert m.idle_deadline() == 10.0
    m.tick(9.99)
    assert m.state is State.READY and kinds(m) == []
    m.tick(10.0)
    assert m.state is State.DRAINING
    assert kinds(m) == [EffectKind.STOP]
    m.stopped(10.5)
    assert m.state is State.STOPPED
    assert [(t.old, t.new) for t in m.take_transitions()] == [
        (State.READY, State.DRAINING),
        (State.DRAINING, State.STOPPED),
    ]


def test_idle_clock_runs_from_last_byte_and_inflight_blocks_idle():
    m = ready_machine(now=0.0)
    _, d = m.arrive(1.0)
    assert d == Admit()
    assert m.idle_deadline() is None  # a request (or stream) is in flight
    m.tick(100.0)
    assert m.state is State.READY
    m.finish(100.0)  # last byte of a long stream
    assert m.idle_deadline() == 110.0
    m.tick(105.0)
    assert m.state is State.READY


def test_waiting_request_blocks_idle():
    m = ready_machine(now=0.0, concurrency=1)
    m.arrive(1.0)
    t2, d2 = m.arrive(1.0)
    assert d2 == Wait()
    m.tick(50.0)
    assert m.state is State.READY


def test_request_arriving_while_draining_waits_and_restarts_after_stop():
    m = ready_machine(now=0.0)
    m.tick(10.0)
    m.take_effects()
    t, d = m.arrive(10.1)
    assert d == Wait() and m.state is State.DRAINING
    assert kinds(m) == []  # no second start while the stop runs
    m.stopped(10.5)
    assert m.state is State.STARTING
    assert kinds(m)[0] is EffectKind.START
    m.started(m.attempt, 11.0)
    assert m.poll(t, 11.0) == Admit()


def test_unload_drains_in_flight_then_stops():
    m = ready_machine(now=0.0)
    m.arrive(1.0)
    assert m.request_stop(2.0, "unload")
    assert m.state is State.DRAINING
    assert kinds(m) == []  # in flight: no stop yet
    m.finish(3.0)
    assert kinds(m) == [EffectKind.STOP]
    m.stopped(3.5)
    assert m.state is State.STOPPED


def test_drain_is_bounded_by_drain_timeout():
    m = ready_machine(now=0.0)
    m.arrive(1.0)
    m.request_stop(2.0, "unload")
    m.tick(6.9)
    assert kinds(m) == []
    m.tick(7.0)
    effects = m.take_effects()
    assert [e.kind for e in effects] == [EffectKind.STOP]
    assert "drain timeout" in effects[0].reason


def test_unload_when_idle_stops_at_once():
    m = ready_machine()
    m.request_stop(1.0, "unload")
    assert kinds(m) == [EffectKind.STOP]


def test_stop_while_starting_cancels_start_and_stops():
    m = machine()
    m.arrive(0.0)
    m.take_effects()
    m.request_stop(0.5, "unload")
    assert m.state is State.DRAINING
    assert kinds(m) == [EffectKind.CANCEL_START, EffectKind.STOP]
    m.started(m.attempt, 0.6)  # the cancelled start reporting late is ignored
    assert m.state is State.DRAINING


def test_unload_of_stopped_model_is_a_no_op():
    m = machine()
    assert not m.request_stop(0.0, "unload")
    assert m.state is State.STOPPED


def test_start_failure_rejects_the_waiters_of_that_attempt():
    m = machine()
    t, _ = m.arrive(0.0)
    m.take_effects()
    m.start_failed(m.attempt, 1.0, "port 8101 is already in use")
    assert m.state is State.FAILED
    assert EffectKind.WAKE in kinds(m)
    d = m.poll(t, 1.0)
    assert isinstance(d, Reject) and d.status == 503 and "port 8101" in d.reason
    assert m.waiting == 0


def test_failed_to_starting_on_next_request_without_backoff_after_one_failure():
    m = machine()
    m.arrive(0.0)
    m.start_failed(m.attempt, 1.0, "boom")
    m.take_effects()
    t, d = m.arrive(1.0)
    assert d == Wait() and m.state is State.STARTING
    assert kinds(m) == [EffectKind.START]


def test_repeated_failures_back_off_with_retry_after():
    m = machine()
    for i in range(2):
        m.arrive(float(i))
        m.start_failed(m.attempt, float(i), "crash")
    assert m.failures == 2
    assert m.retry_at == pytest.approx(1.0 + 2.0)
    t, d = m.arrive(1.5)
    assert t is None and isinstance(d, Reject) and d.code == "backoff" and d.status == 503
    assert d.retry_after_s >= 2
    t, d = m.arrive(3.0)  # backoff over
    assert d == Wait() and m.state is State.STARTING
    m.start_failed(m.attempt, 3.0, "crash")
    assert m.retry_at == pytest.approx(3.0 + 4.0)
    assert m.backoff(10) == 16  # capped


def test_ready_to_failed_on_crash_and_restart_on_next_request():
    m = ready_machine()
    m.arrive(1.0)  # in flight when the container dies
    m.exited(2.0, "exit code 137")
    assert m.state is State.FAILED and m.last_error == "exit code 137"
    m.finish(2.0, ok=False)
    t, d = m.arrive(3.0)
    assert m.state is State.STARTING
    assert kinds(m).count(EffectKind.START) == 1


def test_crash_restarts_for_queued_waiters_when_no_backoff():
    m = ready_machine(concurrency=1)
    m.arrive(1.0)
    t, d = m.arrive(1.0)
    assert d == Wait()
    m.take_effects()
    m.exited(2.0, "oom")
    assert m.state is State.STARTING
    assert EffectKind.START in kinds(m)
    # that restart failing rejects the queued request rather than looping
    m.start_failed(m.attempt, 3.0, "oom again")
    assert isinstance(m.poll(t, 3.0), Reject)


def test_completed_request_resets_failure_count():
    m = ready_machine()
    m.arrive(1.0)
    m.exited(1.5, "crash")
    m.finish(1.5, ok=False)
    m.arrive(2.0)
    m.started(m.attempt, 2.5)
    assert m.failures == 1
    t, d = m.arrive(3.0)
    m.finish(3.5)
    assert m.failures == 0


def test_exit_while_starting_fails_the_attempt():
    m = machine()
    t, _ = m.arrive(0.0)
    m.take_effects()
    m.exited(0.5, "exit code 1")
    assert m.state is State.FAILED
    assert EffectKind.CANCEL_START in kinds(m)
    assert isinstance(m.poll(t, 0.5), Reject)


def test_crash_while_draining_stops_and_records_failure():
    m = ready_machine()
    m.arrive(1.0)
    m.request_stop(1.0, "unload")
    m.take_effects()
    m.exited(1.5, "exit code 139")
    assert kinds(m) == [EffectKind.STOP]
    m.finish(1.5, ok=False)
    m.stopped(1.6)
    assert m.state is State.FAILED and m.failures == 1


def test_exit_during_requested_stop_is_expected():
    m = ready_machine()
    m.request_stop(1.0, "unload")
    m.take_effects()
    m.exited(1.2, "exit code 0")
    assert kinds(m) == []
    m.stopped(1.3)
    assert m.state is State.STOPPED and m.failures == 0


def test_failed_to_stopped_on_unload_clears_backoff():
    m = machine()
    for i in range(3):
        m.arrive(0.0) if m.state is not State.FAILED or 0.0 >= m.retry_at else None
        if m.state is State.STARTING:
            m.start_failed(m.attempt, 0.0, "x")
    assert m.state is State.FAILED
    assert m.request_stop(0.0, "unload")
    assert m.state is State.STOPPED and m.retry_at == 0.0
    _, d = m.arrive(0.1)
    assert d == Wait() and m.state is State.STARTING


def test_shutdown_rejects_waiters_and_new_requests():
    m = ready_machine(concurrency=1)
    m.arrive(1.0)
    t, _ = m.arrive(1.0)
    m.shutdown(2.0)
    assert m.state is State.DRAINING
    r = m.poll(t, 2.0)
    assert isinstance(r, Reject) and r.code == "shutting_down"
    _, r2 = m.arrive(2.0)
    assert isinstance(r2, Reject) and r2.status == 503
    m.finish(2.5)
    assert EffectKind.STOP in kinds(m)
    m.stopped(3.0)
    assert m.state is State.STOPPED
    assert EffectKind.START not in kinds(m)


def test_leave_removes_waiter_and_start_continues():
    m = machine()
    t, _ = m.arrive(0.0)
    m.take_effects()
    m.leave(t, 5.0)
    assert m.waiting == 0 and m.state is State.STARTING
    m.started(m.attempt, 6.0)
    assert m.state is State.READY


def test_adopt_ready_and_adopt_starting():
    m = machine()
    m.adopt(0.0, ready=True)
    assert m.state is State.READY and m.idle_deadline() == 10.0
    assert EffectKind.START not in kinds(m)
    m2 = machine()
    attempt = m2.adopt(0.0, ready=False)
    assert m2.state is State.STARTING and EffectKind.START not in kinds(m2)
    t, d = m2.arrive(0.1)
    assert d == Wait() and EffectKind.START not in kinds(m2)
    m2.started(attempt, 0.5)
    assert m2.poll(t, 0.5) == Admit()


def test_stale_start_outcome_is_ignored():
    m = machine()
    m.arrive(0.0)
    old = m.attempt
    m.start_failed(old, 1.0, "x")
    m.arrive(1.0)
    m.start_failed(old, 1.1, "late report of the old attempt")
    assert m.state is State.STARTING
    m.started(old, 1.2)
    assert m.state is State.STARTING


def test_finish_without_admit_is_an_error():
    m = machine()
    with pytest.raises(RuntimeError):
        m.finish(0.0)
