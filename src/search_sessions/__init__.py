"""Search sessions and search-quality metrics from raw search event logs, on Bytewax.

The library behind the ``search-sessions`` command::

    from search_sessions import Config, run

    summary = run(Config(inputs=("events.jsonl",), searches="out/searches.jsonl"))
    print(summary.text())

Public names: :class:`Config` (everything a run needs, pure data) and
:func:`parse_duration`, :func:`run` (run a job to its end) and its
:class:`Summary`, :func:`simulate` (write simulated traffic) with
:class:`SimSpec`, :func:`sessionize` (the Bytewax operator for your own
flows), and the errors, all subclasses of :class:`SearchSessionsError`.

Names are imported when first used, so ``import search_sessions.core`` (plain
Python) does not load Bytewax.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import sys
import types
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .config import Config, parse_duration
    from .dataflow.operator import sessionize
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

_WHERE = {
    "Config": ("config", "Config"),
    "parse_duration": ("config", "parse_duration"),
    "ConfigError": ("errors", "ConfigError"),
    "InputError": ("errors", "InputError"),
    "OutputError": ("errors", "OutputError"),
    "RunError": ("errors", "RunError"),
    "SearchSessionsError": ("errors", "SearchSessionsError"),
    "StrictError": ("errors", "StrictError"),
    "Summary": ("runtime.run", "Summary"),
    "run": ("runtime.run", "run"),
    "SimSpec": ("simulate", "SimSpec"),
    "simulate": ("simulate", "write"),
    "sessionize": ("dataflow.operator", "sessionize"),
}

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
    "sessionize",
    "simulate",
]


class _Asyncio(types.ModuleType):
    """What ``bytewax.inputs`` gets for ``asyncio`` (see :class:`_DeferAsyncio`): the
    module itself, imported at the first use of one of its names."""

    def __getattr__(self, name: str) -> Any:
        if sys.modules.get("asyncio") is self:
            del sys.modules["asyncio"]
        return getattr(importlib.import_module("asyncio"), name)


class _DeferAsyncio:
    """Bytewax's ``inputs`` module imports asyncio (and with it ssl) for one helper
    (``batch_async``) no part of a run calls: 20-30 ms and 1.7 MB of every process's
    start, an eighth of it. While ``bytewax.inputs`` is executed, and only if nothing
    has imported asyncio yet, ``asyncio`` is an :class:`_Asyncio` stand-in, which that
    module keeps; every other importer gets the real module. Removed at its one use."""

    def find_spec(self, name: str, path: Any, target: Any = None) -> Any:
        if name != "bytewax.inputs":
            return None
        sys.meta_path.remove(self)
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is None or spec.loader is None or "asyncio" in sys.modules:
            return spec
        execute = spec.loader.exec_module

        def exec_module(module: types.ModuleType) -> None:
            sys.modules["asyncio"] = _Asyncio("asyncio")
            try:
                execute(module)
            finally:
                if isinstance(sys.modules.get("asyncio"), _Asyncio):
                    del sys.modules["asyncio"]

        spec.loader.exec_module = exec_module  # type: ignore[method-assign]
        return spec


if "bytewax.inputs" not in sys.modules:
    sys.meta_path.insert(0, _DeferAsyncio())


def __getattr__(name: str) -> Any:
    where = _WHERE.get(name)
    if where is None:
        raise AttributeError(f"module 'search_sessions' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{where[0]}", __name__), where[1])
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
