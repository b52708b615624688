"""Search sessions and search-quality metrics from raw search event logs, on Bytewax.

The library behind the ``search-sessions`` command::

    from search_sessions import Config, run

    summary = run(Config(inputs=("events.jsonl",), searches="out/searches.jsonl"))
    print(summary.text())

Public names: :class:`Config` (everything a run needs, pure data),
:func:`run` (run a job to its end) and its :class:`Summary`,
:func:`simulate` (write simulated traffic) with :class:`SimSpec`,
:func:`sessionize` (the Bytewax operator for your own flows), and the errors,
all subclasses of :class:`SearchSessionsError`.
"""

from __future__ import annotations

from .config import Config, parse_duration
from .errors import (
    ConfigError,
    InputError,
    OutputError,
    RunError,
    SearchSessionsError,
    StrictError,
)
from .runtime.run import Summary, run
from .simulate import SimSpec
from .simulate import write as simulate

__all__ = [
    "Config",
    "ConfigError",
    "InputError",
    "OutputError",
    "RunError",
    "SearchSessionsError",
    "SimSpec",
    "StrictError",
    "Summary",
    "parse_duration",
    "run",
    "simulate",
]
