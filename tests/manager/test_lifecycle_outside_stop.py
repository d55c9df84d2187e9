"""The lifecycle's transition for a runtime stopped from outside the manager (issue 17: a `docker stop`
by hand is not a crash)."""

from __future__ import annotations

from voxgate_manager.lifecycle.machine import Admit, EffectKind, Lifecycle, Limits, State


def ready_machine() -> Lifecycle:
    m = Lifecycle(Limits(concurrency=1))
    t, _ = m.arrive(0.0)
    m.started(m.attempt, 1.0)
    assert m.poll(t, 1.0) == Admit()
    m.finish(2.0)
    m.take_effects(), m.take_transitions()
    return m


def test_ready_to_stopped_without_a_failure():
    m = ready_machine()
    m.stopped_outside(3.0, "container stopped by hand")
    assert m.state is State.STOPPED and m.failures == 0 and m.retry_at == 0.0
    assert [(t.old, t.new) for t in m.take_transitions()] == [(State.READY, State.STOPPED)]
    assert not [e for e in m.take_effects() if e.kind is EffectKind.START]
    _, decision = m.arrive(4.0)  # the next request starts it again at once (no backoff)
    assert m.state is State.STARTING and not isinstance(decision, Admit)


def test_waiting_requests_restart_it():
    m = ready_machine()
    m.inflight = 1  # one request busy, one waiting for the slot
    t, _ = m.arrive(3.0)
    m.take_effects()
    m.stopped_outside(3.5, "by hand")
    assert m.state is State.STARTING
    assert [e.kind for e in m.take_effects()].count(EffectKind.START) == 1
    assert t.seq in m.queue


def test_while_starting_it_is_a_failed_start():
    m = Lifecycle(Limits())
    m.arrive(0.0)
    m.stopped_outside(1.0, "by hand")
    assert m.state is State.FAILED and m.failed_attempt == m.attempt
