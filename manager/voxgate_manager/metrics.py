"""Prometheus metrics of the model lifecycle, on a registry of our own (served at /metrics)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from voxgate_manager.lifecycle.machine import State

START_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.cold_starts = Counter("voxgate_manager_cold_starts_total", "Starts of a stopped/failed model", ["model"], registry=r)
        self.start_duration = Histogram(
            "voxgate_manager_start_duration_seconds",
            "Time to make a model ready, by phase: container (create/start or spawn), readiness, warmup, total",
            ["model", "phase"],
            buckets=START_BUCKETS,
            registry=r,
        )
        self.start_failures = Counter("voxgate_manager_start_failures_total", "Starts that failed", ["model"], registry=r)
        self.inflight = Gauge("voxgate_manager_requests_in_flight", "Requests being proxied (streams until their last byte)", ["model"], registry=r)
        self.queue_depth = Gauge("voxgate_manager_queue_depth", "Requests held or queued for a model", ["model"], registry=r)
        self.idle_stops = Counter("voxgate_manager_idle_stops_total", "Stops after idle_timeout_s without work", ["model"], registry=r)
        self.stops = Counter("voxgate_manager_stops_total", "Runtime stops by reason", ["model", "reason"], registry=r)
        self.crashes = Counter("voxgate_manager_crashes_total", "Unexpected exits by reason (exit, oom, health, start_failed)", ["model", "reason"], registry=r)
        self.requests = Counter("voxgate_manager_requests_total", "Proxied requests by outcome", ["model", "outcome"], registry=r)
        self.parks = Counter("voxgate_manager_parks_total", "Parks (server's GPU memory given back) by reason", ["model", "reason"], registry=r)
        self.wakes = Counter("voxgate_manager_wakes_total", "Wakes of a parked model by reason (request, admin)", ["model", "reason"], registry=r)
        self.park_duration = Histogram("voxgate_manager_park_duration_seconds", "Time the server took to park", ["model"],
                                       buckets=START_BUCKETS, registry=r)
        self.wake_duration = Histogram("voxgate_manager_wake_duration_seconds", "Time the server took to wake", ["model"],
                                       buckets=START_BUCKETS, registry=r)
        self.state = Gauge("voxgate_manager_model_state", "1 for the model's current state", ["model", "state"], registry=r)

    def set_state(self, model: str, state: State) -> None:
        for s in State:
            self.state.labels(model, s.value).set(1 if s is state else 0)

    def render(self) -> bytes:
        return generate_latest(self.registry)
