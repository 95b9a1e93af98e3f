"""Prometheus metrics, one registry per app (so tests can build many apps in one process)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

# Latency buckets (seconds): 1 ms .. 30 s.
LATENCY_BUCKETS = (
    0.001,
    0.0025,
    0.005,
    0.0075,
    0.01,
    0.015,
    0.02,
    0.03,
    0.05,
    0.075,
    0.1,
    0.15,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


class Metrics:
    """Request counts and latencies per endpoint, stage latencies, batching and errors."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "shapes_requests",
            "HTTP requests by endpoint, method and status code",
            ["endpoint", "method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "shapes_request_duration_seconds",
            "HTTP request latency by endpoint",
            ["endpoint"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.stage = Histogram(
            "shapes_stage_duration_seconds",
            "Time per pipeline stage (read, parse, normalize, hull, cast: the rays with their "
            "features, queue, inference, search)",
            ["endpoint", "stage"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.batch_size = Histogram(
            "shapes_batch_size",
            "Maps per onnxruntime call",
            buckets=BATCH_BUCKETS,
            registry=self.registry,
        )
        self.queue_depth = Gauge(
            "shapes_queue_depth",
            "Maps waiting for the model",
            registry=self.registry,
        )
        self.pending = Gauge(
            "shapes_pending_requests",
            "Requests admitted and not finished (parsing, casting or waiting for the model)",
            registry=self.registry,
        )
        self.errors = Counter(
            "shapes_errors",
            "Error responses by kind",
            ["kind"],
            registry=self.registry,
        )
        self.gallery_items = Gauge(
            "shapes_gallery_items",
            "Items in the gallery",
            registry=self.registry,
        )
        self.ready = Gauge(
            "shapes_ready",
            "1 once the model is loaded and warmed up and the gallery is open",
            registry=self.registry,
        )

    def observe_stages(self, endpoint: str, timings_ms: dict[str, float]) -> None:
        for stage, ms in timings_ms.items():
            if stage != "total":
                self.stage.labels(endpoint=endpoint, stage=stage).observe(ms / 1e3)

    def render(self) -> bytes:
        return generate_latest(self.registry)
