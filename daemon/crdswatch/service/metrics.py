"""Prometheus metrics of one daemon, in a registry of its own (so tests can run several)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest

__all__ = ["Metrics"]


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.polls = Counter("crdswatch_polls", "Polls of a CRDS source, by outcome", ["source", "outcome"], registry=r)
        self.activations = Counter("crdswatch_activations", "Activations processed", ["source"], registry=r)
        self.notices = Counter("crdswatch_notices", "Delivery attempts by channel and outcome",
                               ["channel", "outcome"], registry=r)
        self.outbox = Gauge("crdswatch_outbox_depth", "Outbox rows by status", ["status"], registry=r)
        self.last_poll = Gauge("crdswatch_last_successful_poll_timestamp_seconds",
                               "Unix time of the last successful poll", ["source"], registry=r)
        self.failures = Gauge("crdswatch_source_consecutive_failures", "Consecutive failed polls", ["source"],
                              registry=r)
        self.alerts = Counter("crdswatch_alerts", "Operator alerts raised", ["kind"], registry=r)
        self.channel_unsent = Gauge("crdswatch_channel_unsent_seconds", "Seconds a channel kind has had rows "
                                    "waiting for a retry and no successful send (0: none waiting, or it delivers)",
                                    ["channel"], registry=r)
        self.poll_bytes = Gauge("crdswatch_last_poll_bytes_received", "Bytes received by the last poll",
                                ["source"], registry=r)

        self.http_connections = Gauge("crdswatch_http_open_connections", "Open HTTP client connections",
                                      registry=r)
        self.http_cut = Counter("crdswatch_http_connections_cut", "HTTP client connections cut short "
                                "(shed, refused, head_timeout, rejected)", ["reason"], registry=r)

        self.inbound = Counter("crdswatch_inbound_mail", "Inbound list mail by outcome (accepted, refused_rcpt, "
                               "malformed, oversize, failed, cut_deadline, cut_connections)", ["outcome"], registry=r)
        self.inbound_trips = Counter("crdswatch_inbound_bound_trips", "Inbound list mail bounds tripped (oversize, "
                                     "line_length, session_timeout, connections, rate_address, rate_total)",
                                     ["reason"], registry=r)

    def render(self) -> bytes:
        return generate_latest(self.registry)
