"""Progress reporting and the Prometheus endpoint, with a controlled clock."""

from __future__ import annotations

import io
import time
import urllib.request

from search_sessions.runtime.progress import Metrics, Reporter, serve_metrics, status_line

from ..kafka_broker import free_port


def test_status_line_shows_rate_watermark_lag_open_and_late() -> None:
    m = Metrics(events_in=5000, late=3, searches_out=10, clicked_out=7)
    m.open_sessions[1] = 40
    m.watermark[1] = 1_704_067_200_000_000
    line = status_line(m, 2500.0, now=1_704_067_260.0)
    assert "events 5,000 (2,500/s)" in line
    assert "watermark 2024-01-01T00:00:00Z" in line and "lag 60s" in line
    assert "open sessions 40" in line and "late 3" in line and "CTR 0.700" in line


def test_reporter_writes_log_lines_when_not_a_terminal() -> None:
    out = io.StringIO()
    m = Metrics()
    r = Reporter(m, out=out, log_every=0.05).start()
    m.events_in = 100
    time.sleep(0.2)
    r.stop()
    lines = out.getvalue().splitlines()
    assert lines and all("events" in ln for ln in lines)
    assert "\r" not in out.getvalue()


def test_prometheus_endpoint() -> None:
    m = Metrics(events_in=12, invalid=2, late=1, searches_out=4, clicked_out=1, sessions_out=3)
    m.open_sessions[0] = 5
    port = free_port()
    server = serve_metrics(m, port, clock=lambda: 100.0)
    try:
        body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics").read().decode()
    finally:
        server.shutdown()
    for want in (
        "search_sessions_events_in_total 12.0",
        "search_sessions_invalid_total 2.0",
        "search_sessions_late_total 1.0",
        "search_sessions_open_sessions 5.0",
        "search_sessions_ctr 0.25",
        "search_sessions_searches_out_total 4.0",
    ):
        assert want in body
