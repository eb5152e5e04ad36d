"""Prometheus metrics of the service, fed from the runs' own events."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from streamrag.answer.events import Done, Error, Event

__all__ = ["CONTENT_TYPE_LATEST", "Metrics"]

_SECONDS = (0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 15, 30, 60, 120)


class Metrics:
    """One registry per app, so that several apps in one process do not collide."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.ttft = Histogram(
            "streamrag_time_to_first_token_seconds", "Time to first token.", buckets=_SECONDS,
            registry=r,
        )  # fmt: skip
        self.total = Histogram(
            "streamrag_answer_seconds", "Time from question to done.", buckets=_SECONDS,
            registry=r,
        )  # fmt: skip
        self.retrieval = Histogram(
            "streamrag_retrieval_seconds",
            "Retrieval latency.",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
            registry=r,
        )
        self.tokens_per_second = Histogram(
            "streamrag_tokens_per_second",
            "Generation speed per answer.",
            buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500),
            registry=r,
        )
        self.active_streams = Gauge("streamrag_active_streams", "Open event streams.", registry=r)
        self.runs = Counter(
            "streamrag_runs", "Finished runs by finish reason.", ["finish_reason"], registry=r
        )
        self.cancellations = Counter(
            "streamrag_cancellations", "Runs cancelled (explicitly or after a drop).", registry=r
        )
        self.disconnects = Counter(
            "streamrag_disconnects", "Streams whose client went away before done.", registry=r
        )
        self.errors = Counter("streamrag_errors", "Run errors by code.", ["code"], registry=r)
        self.moderation = Counter(
            "streamrag_moderation_matches",
            "Moderation rules that fired, by target (input, output), rule class and action.",
            ["target", "rule_class", "action"],
            registry=r,
        )
        self.holdback = Histogram(
            "streamrag_moderation_holdback_seconds",
            "Per answer, the longest any token was held back by output moderation.",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 1),
            registry=r,
        )
        self.classifier = Histogram(
            "streamrag_moderation_classifier_seconds",
            "Per answer, the slowest answer of an external moderation classifier.",
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
            registry=r,
        )
        self.classifier_errors = Counter(
            "streamrag_moderation_classifier_errors",
            "Questions to an external moderation classifier that got no answer.",
            registry=r,
        )

    def observe_run(self, events: list[Event]) -> None:
        """Record a finished run from its events."""
        for event in events:
            if isinstance(event, Error):
                self.errors.labels(event.code).inc()
        done = events[-1] if events else None
        if not isinstance(done, Done):
            return
        self.runs.labels(done.finish_reason).inc()
        for fired in done.moderation:
            self.moderation.labels(fired.target, fired.rule_class, fired.action).inc(fired.count)
        if done.finish_reason == "cancelled":
            self.cancellations.inc()
        timings = done.timings
        if "ttft_ms" in timings:
            self.ttft.observe(timings["ttft_ms"] / 1000)
        if "total_ms" in timings:
            self.total.observe(timings["total_ms"] / 1000)
        if "retrieve_ms" in timings:
            self.retrieval.observe(timings["retrieve_ms"] / 1000)
        if "holdback_ms_max" in timings:
            self.holdback.observe(timings["holdback_ms_max"] / 1000)
        if "classifier_ms_max" in timings:
            self.classifier.observe(timings["classifier_ms_max"] / 1000)
        self.classifier_errors.inc(timings.get("classifier_errors", 0))
        tokens = done.usage.get("completion_tokens", 0)
        generating = (timings.get("total_ms", 0) - timings.get("ttft_ms", 0)) / 1000
        if tokens > 1 and generating > 0:
            self.tokens_per_second.observe((tokens - 1) / generating)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
