"""Prometheus metrics of one bridge instance, on a registry of its own (no global state)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.observations = Counter(
            "oicp_bridge_observations",
            "OCPI EVSE observations received, by OCPI status",
            ["ocpi_status"],
            registry=r,
        )
        self.not_pushed = Counter(
            "oicp_bridge_observations_not_pushed",
            "observations not pushed, by reason",
            ["reason"],
            registry=r,
        )
        self.records_pushed = Counter(
            "oicp_bridge_records_pushed",
            "records sent to Hubject, by result (delivered, retry, dead, parked)",
            ["operator_id", "result"],
            registry=r,
        )
        self.pending = Gauge(
            "oicp_bridge_pending_records",
            "records Hubject has not acknowledged yet (pending or being pushed)",
            ["operator_id"],
            registry=r,
        )
        self.oldest_pending_age = Gauge(
            "oicp_bridge_oldest_pending_age_seconds",
            "age of the oldest pending record",
            ["operator_id"],
            registry=r,
        )
        self.push_latency = Histogram(
            "oicp_bridge_push_duration_seconds",
            "duration of one eRoamingPushEvseStatus call including retries",
            ["action"],
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
            registry=r,
        )
        self.dead_letters = Counter(
            "oicp_bridge_dead_letters",
            "records Hubject refused for good, by code",
            ["operator_id", "code"],
            registry=r,
        )
        self.auth_failures = Counter(
            "oicp_bridge_auth_failures",
            "requests refused for a missing, malformed or unknown token, by listener (ocpi, admin)",
            ["listener"],
            registry=r,
        )
        for listener in ("ocpi", "admin"):
            self.auth_failures.labels(listener)
        self.resyncs = Counter(
            "oicp_bridge_resyncs", "fullLoad resyncs, by result", ["operator_id", "result"], registry=r
        )
