"""What a running process reports: a progress line, log lines, Prometheus metrics.

The sources and shards of this process add to one
:class:`~search_sessions.control.Metrics` (a few integer updates per batch); a
reporter thread prints it, on a terminal as one line rewritten in place and
otherwise as a log line every ``log_every`` seconds, and an optional HTTP
endpoint serves it to Prometheus. Wall-clock time comes from an injectable
``clock``.

>>> m = Metrics(events_in=10, searches_out=4, clicked_out=1)
>>> status_line(m, rate=5.0, now=0.0)[:38]
'events 10 (5/s), watermark -, lag -, o'
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, TextIO

from ..control import METRICS, Metrics
from ..core.time import format_time

__all__ = ["METRICS", "Metrics", "Reporter", "lag_seconds", "serve_metrics", "status_line"]


def lag_seconds(m: Metrics, now: float) -> float | None:
    """How far the watermark trails the wall clock."""
    wm = m.low_watermark
    return None if wm is None else now - wm / 1e6


def status_line(m: Metrics, rate: float, now: float) -> str:
    wm = m.low_watermark
    lag = lag_seconds(m, now)
    ctr = "n/a" if m.ctr is None else f"{m.ctr:.3f}"
    return (
        f"events {m.events_in:,} ({rate:,.0f}/s), watermark "
        f"{'-' if wm is None else format_time(wm)}, lag {'-' if lag is None else f'{lag:,.0f}s'}, "
        f"open sessions {m.open_total:,}, late {m.late:,}, invalid {m.invalid:,}, "
        f"searches {m.searches_out:,}, CTR {ctr}"
    )


class Reporter:
    """Prints progress until stopped: a live line on a terminal, log lines elsewhere."""

    def __init__(
        self,
        metrics: Metrics,
        out: TextIO = sys.stderr,
        every: float = 1.0,
        log_every: float = 10.0,
        clock: Callable[[], float] = time.time,
        prefix: str = "",
    ) -> None:
        self.metrics = metrics
        self.out = out
        self.tty = out.isatty()
        self.every = every if self.tty else log_every
        self.clock = clock
        self.prefix = prefix
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._loop, name="progress", daemon=True)

    def start(self) -> Reporter:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.done.set()
        self.thread.join(timeout=2)
        if self.tty:
            self.out.write("\r\033[K")
            self.out.flush()

    def _loop(self) -> None:
        last_t, last_n = self.clock(), self.metrics.events_in
        while not self.done.wait(self.every):
            now, n = self.clock(), self.metrics.events_in
            rate = (n - last_n) / max(now - last_t, 1e-9)
            last_t, last_n = now, n
            line = self.prefix + status_line(self.metrics, rate, now)
            if self.tty:
                self.out.write("\r\033[K" + line[:200])
            else:
                self.out.write(f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(now))} {line}\n")
            self.out.flush()


def serve_metrics(
    metrics: Metrics, port: int, host: str = "127.0.0.1", clock: Callable[[], float] = time.time
) -> Any:
    """Serve ``metrics`` for Prometheus on ``host:port`` (``/metrics``); returns the server."""
    from prometheus_client import CollectorRegistry, start_http_server
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

    class Collector:
        def collect(self) -> Iterator[Any]:
            m = metrics
            yield CounterMetricFamily("search_sessions_events_in", "Valid events read", m.events_in)
            yield CounterMetricFamily("search_sessions_invalid", "Invalid records", m.invalid)
            yield CounterMetricFamily("search_sessions_late", "Late events", m.late)
            yield CounterMetricFamily(
                "search_sessions_searches_out", "Searches emitted", m.searches_out
            )
            yield CounterMetricFamily(
                "search_sessions_sessions_out", "Sessions emitted", m.sessions_out
            )
            yield GaugeMetricFamily(
                "search_sessions_open_sessions", "Users with open sessions", m.open_total
            )
            lag = lag_seconds(m, clock())
            yield GaugeMetricFamily(
                "search_sessions_watermark_lag_seconds",
                "Wall clock minus watermark",
                float("nan") if lag is None else lag,
            )
            yield GaugeMetricFamily(
                "search_sessions_ctr",
                "Clicked searches / searches",
                float("nan") if m.ctr is None else m.ctr,
            )

    registry = CollectorRegistry()
    registry.register(Collector())
    server, _thread = start_http_server(port, addr=host, registry=registry)
    return server
