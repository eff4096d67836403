"""Prometheus metrics of one server, in its own registry (never the global one)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from weft.serve._batcher import BatcherStatistics

__all__ = ["Metrics"]

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_ROW_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
_REASONS = {503: "overloaded", 504: "timeout", 413: "too_large", 401: "unauthorized"}


class Metrics:
    """Requests by status, latency and batch-size histograms, queue depth, rejections."""

    content_type = "text/plain; version=0.0.4; charset=utf-8"

    def __init__(self, models: list[str], batchers: Callable[[], dict[str, BatcherStatistics]],
                 in_flight: Callable[[], int] = lambda: 0) -> None:
        from prometheus_client import CollectorRegistry, Counter, Histogram
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        self.registry = CollectorRegistry(auto_describe=False)
        self._requests = Counter("weft_requests", "Inference requests answered, by model and HTTP status.",
                                 ["model", "status"], registry=self.registry)
        self._latency = Histogram("weft_request_duration_seconds", "Inference request latency, body read to answer.",
                                  ["model"], buckets=_LATENCY_BUCKETS, registry=self.registry)
        self._rows = Histogram("weft_batch_size", "Rows per batch run by the model.",
                               ["model"], buckets=_ROW_BUCKETS, registry=self.registry)
        self._rejections = Counter("weft_rejections", "Requests refused before compute, by reason.",
                                   ["model", "reason"], registry=self.registry)
        self._models = set(models)
        self._children: dict[tuple[str, int], tuple[Any, Any]] = {}
        self._latency_children = {m: self._latency.labels(m) for m in models}

        class _Queues:
            def collect(self) -> Iterator[Any]:
                stats = batchers()
                depth = GaugeMetricFamily("weft_queue_depth", "Requests waiting for a batch.", labels=["model"])
                running = GaugeMetricFamily("weft_running_batches", "Batches computing now.", labels=["model"])
                batches = CounterMetricFamily("weft_batches", "Batches run.", labels=["model"])
                split = CounterMetricFamily("weft_split_batches", "Batches of several requests the model failed "
                                            "on, re-run in halves to find the failing requests.", labels=["model"])
                reruns = CounterMetricFamily("weft_rerun_batches", "The smaller batches run to find the failing "
                                             "requests of a failed batch.", labels=["model"])
                for name, s in stats.items():
                    depth.add_metric([name], s.queued)
                    running.add_metric([name], s.running_batches)
                    batches.add_metric([name], s.batches)
                    split.add_metric([name], s.split_batches)
                    reruns.add_metric([name], s.rerun_batches)
                yield depth
                active = GaugeMetricFamily("weft_requests_in_flight", "Inference requests received and not yet answered.")
                active.add_metric([], in_flight())
                yield active
                yield running
                yield batches
                yield split
                yield reruns

        self.registry.register(_Queues())

    def label(self, model: str) -> str:
        return model if model in self._models else "_unknown"

    def request(self, model: str, status: int, seconds: float | None) -> None:
        key = (model, status)
        children = self._children.get(key)
        if children is None:
            # Label lookups are cached: under overload this runs for every refusal.
            label = self.label(model)
            reason = _REASONS.get(status)
            children = self._children[key] = (self._requests.labels(label, str(status)),
                                              None if reason is None else self._rejections.labels(label, reason))
        children[0].inc()
        if children[1] is not None:
            children[1].inc()
        if seconds is not None and model in self._latency_children:
            self._latency_children[model].observe(seconds)

    def batch(self, model: str) -> Callable[[int], None]:
        return self._rows.labels(model).observe

    def render(self) -> bytes:
        from prometheus_client import generate_latest

        data: bytes = generate_latest(self.registry)
        return data
