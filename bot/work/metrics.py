"""Prometheus metrics of one process (prometheus-client), served at PIX2CHAT_METRICS_PORT.

Each process owns a `Metrics` (its own registry, passed down like every other dependency):
`pix2chat run` reports admissions, refusals, deliveries and the shared queue; every process
that runs the model (`pix2chat run` embedded, each `pix2chat worker`) reports its batches.
Sum the GPU figures over processes; the waiting count is the whole queue, read from the
database, so take its maximum. docs/METRICS.md lists them with the Grafana dashboard.
"""

from __future__ import annotations

import logging
from threading import Thread
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

log = logging.getLogger(__name__)

EDIT_SECONDS = (0.5, 1, 2, 3, 5, 8, 13, 20, 30, 60, 120, 300)
WAIT_SECONDS = (0.1, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800)
BATCH_SIZES = (1, 2, 3, 4, 6, 8, 12, 16)
REFUSAL_REASONS = ("rate", "quota", "pending", "queue", "access")
PLATFORMS = ("telegram", "discord", "web")


class Metrics:
    """Every metric pix2chat exports, in one registry."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.edits = Counter(
            "pix2chat_edits", "Edits computed by this process, by outcome", ["outcome"], registry=r
        )
        self.waiting = Gauge(
            "pix2chat_edits_waiting", "Edits queued in the whole deployment", registry=r
        )
        self.running_all = Gauge(
            "pix2chat_edits_running_total",
            "Edits running in the whole deployment (from the database)",
            registry=r,
        )
        self.running = Gauge(
            "pix2chat_edits_running", "Edits in this process's model right now", registry=r
        )
        self.queue_wait = Histogram(
            "pix2chat_queue_wait_seconds",
            "From queued to started",
            buckets=WAIT_SECONDS,
            registry=r,
        )
        self.edit_duration = Histogram(
            "pix2chat_edit_duration_seconds",
            "Pipeline call that computed the edit (its batch), decode to stored result",
            buckets=EDIT_SECONDS,
            registry=r,
        )
        self.batch_size = Histogram(
            "pix2chat_batch_size", "Edits per pipeline call", buckets=BATCH_SIZES, registry=r
        )
        self.gpu_seconds = Counter(
            "pix2chat_gpu_seconds", "Time the model thread spent on edits", registry=r
        )
        self.refusals = Counter(
            "pix2chat_refusals", "Requests refused, by reason", ["reason"], registry=r
        )
        self.failed_deliveries = Counter(
            "pix2chat_deliveries_failed",
            "Results or failures that could not be sent, by platform",
            ["platform"],
            registry=r,
        )
        self.model_ready = Gauge(
            "pix2chat_model_ready", "1 once the model is loaded, 0 while it loads", registry=r
        )
        for outcome in ("done", "failed"):
            self.edits.labels(outcome=outcome)
        for reason in REFUSAL_REASONS:
            self.refusals.labels(reason=reason)
        for platform in PLATFORMS:
            self.failed_deliveries.labels(platform=platform)


class MetricsServer:
    """The /metrics HTTP endpoint in a daemon thread (prometheus-client's own server)."""

    def __init__(self, metrics: Metrics, host: str, port: int) -> None:
        self.metrics = metrics
        self.host = host
        self.port = port
        self._server: WSGIServer | None = None
        self._thread: Thread | None = None

    def start(self) -> int:
        """Listen; the port actually bound (0 picks a free one)."""
        self._server, self._thread = start_http_server(
            self.port, addr=self.host, registry=self.metrics.registry
        )
        self.port = self._server.server_port
        log.info("metrics on http://%s:%d/metrics", self.host, self.port)
        return self.port

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
