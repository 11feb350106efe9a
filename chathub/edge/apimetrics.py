"""The HTTP API's figures on /metrics: requests, refusals, publish latency.

Counters are plain dicts the API bumps as it answers (one per request, off the hub
loop) and a collector reads at scrape time; only the publish histogram is observed
as it happens. Every label has a bounded set of values: ``endpoint`` is one of the
API's own endpoint names (anything else is ``other``; a body refused before its
path is known is ``unknown``), ``status`` an HTTP status the API sends, ``reason``
one of :data:`REFUSALS`' values.

Series (``chathub_`` prefix, Prometheus text format):

- ``api_requests_total{endpoint, status}``: requests answered.
- ``api_refusals_total{reason}``: requests refused before any work, by reason.
- ``api_publish_seconds``: time from a publish's arrival to its stamped answer.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.core import CounterMetricFamily, Metric

#: refusal reason of each HTTP status counted as a refusal
REFUSALS = {400: "bad_request", 401: "unauthorized", 413: "too_large", 429: "rate_limited"}
#: publish latency buckets, seconds (validation, moderation, one stamping batch in Valkey)
PUBLISH_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class ApiMetrics:
    """Counts the API's answers; register on the daemon's registry once.

    Args:
        registry: the daemon's Prometheus registry (:attr:`chathub.metrics.Metrics.registry`).
        endpoints: the API's endpoint names (anything else is counted as ``other``).
    """

    def __init__(self, registry: CollectorRegistry, endpoints: frozenset[str]) -> None:
        self.endpoints = endpoints
        #: (endpoint, status) -> requests answered
        self.requests: dict[tuple[str, int], int] = {}
        #: reason -> requests refused
        self.refusals: dict[str, int] = {}
        self.publish = Histogram("chathub_api_publish_seconds",
                                 "Time from an API publish's arrival to its stamped answer",
                                 buckets=PUBLISH_BUCKETS, registry=registry)
        registry.register(self)  # type: ignore[arg-type]

    def answered(self, endpoint: str, status: int) -> None:
        """One answer with ``status`` to a request for ``endpoint`` (an API path's last part)."""
        self._count(endpoint if endpoint in self.endpoints else "other", status)

    def body_too_large(self) -> None:
        """A body over ``api.max_body`` was answered 413 before its request was parsed."""
        self._count("unknown", 413)

    def _count(self, endpoint: str, status: int) -> None:
        self.requests[(endpoint, status)] = self.requests.get((endpoint, status), 0) + 1
        reason = REFUSALS.get(status)
        if reason is not None:
            self.refusals[reason] = self.refusals.get(reason, 0) + 1

    def collect(self) -> Iterator[Metric]:
        requests = CounterMetricFamily("chathub_api_requests", "HTTP API requests answered, "
                                       "by endpoint and status", labels=["endpoint", "status"])
        for (endpoint, status), n in sorted(self.requests.items()):
            requests.add_metric([endpoint, str(status)], n)
        yield requests
        refusals = CounterMetricFamily("chathub_api_refusals", "HTTP API requests refused, "
                                       "by reason (bad_request, unauthorized, too_large, "
                                       "rate_limited)", labels=["reason"])
        for reason, n in sorted(self.refusals.items()):
            refusals.add_metric([reason], n)
        yield refusals
