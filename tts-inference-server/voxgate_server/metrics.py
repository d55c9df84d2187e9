"""Prometheus series for the server, in a registry per app so tests can run several apps."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

_LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120)


class ServerMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("voxgate_requests", "Speech requests by outcome", ["model", "format", "status"], registry=r)
        self.errors = Counter("voxgate_errors", "Error responses by type", ["type"], registry=r)
        self.synthesis_seconds = Histogram(
            "voxgate_synthesis_seconds", "Wall time from admission to last byte", ["model"], buckets=_LATENCY_BUCKETS, registry=r
        )
        self.audio_seconds = Counter("voxgate_audio_seconds", "Seconds of audio produced", ["model"], registry=r)
        self.ttfa = Histogram(
            "voxgate_time_to_first_audio_seconds", "Time from admission to the first encoded bytes", ["model"],
            buckets=_LATENCY_BUCKETS, registry=r,
        )
        self.queue_depth = Gauge("voxgate_queue_depth", "Requests waiting for an engine worker", ["engine"], registry=r)
        self.active = Gauge("voxgate_active_requests", "Requests being synthesized", ["engine"], registry=r)
        self.engine_ready = Gauge("voxgate_engine_ready", "1 when the engine can synthesize", ["engine"], registry=r)
        self.load_seconds = Gauge("voxgate_engine_load_seconds", "Time the engine took to load", ["engine"], registry=r)

    def render(self) -> bytes:
        return generate_latest(self.registry)
