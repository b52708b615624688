"""The schema: event kinds, the input structs, and every output record's fields.

One place defines each record: the msgspec structs below fix the fields and
their order, so the JSON encoding, the SQL tables
(:func:`search_sessions.connectors.sql.schema_sql`) and the report's columns
all follow from them. Input events are decoded once, at the edge, into the
struct their ``type`` tag names (the tutorial's class names are accepted too).

Event kinds are small ints (the ``kind`` slot of an event tuple): comparing
them is the hot path's dispatch.

>>> OutputKind("searches").record_type.__name__
'SearchRecord'
>>> [f for f in field_names(SessionRecord)][:3]
['session_id', 'user', 'start']
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, ClassVar, Final, Union

import msgspec
import msgspec.inspect

APP_OPEN: Final = 0
SEARCH: Final = 1
RESULTS: Final = 2
CLICK: Final = 3
APP_CLOSE: Final = 4
CONVERSION: Final = 5

KIND_NAMES: Final = ("app_open", "search", "results", "click", "app_close", "conversion")
"""Input ``type`` names, indexed by kind."""


# Input events ------------------------------------------------------------------


class _Base(msgspec.Struct, tag_field="type", gc=False):
    user: Union[str, int]
    time: Union[str, int, float]


class AppOpen(_Base, tag="app_open"):
    pass


class Search(_Base, tag="search"):
    query: str
    search_id: Union[str, None] = None


class Results(_Base, tag="results"):
    items: list[str]
    search_id: Union[str, None] = None


MAX_RANK: Final = 2**63 - 1
"""The largest click ``rank`` (larger ones are invalid: no result list is that long,
and msgspec bounds an integer in 64 bits)."""


class Click(_Base, tag="click"):
    item: str
    rank: Union[Annotated[int, msgspec.Meta(ge=1, le=MAX_RANK)], None] = None
    search_id: Union[str, None] = None


class AppClose(_Base, tag="app_close"):
    pass


class Conversion(_Base, tag="conversion"):
    """A purchase, an add to cart or any other goal; ``kind`` says which."""

    item: Union[str, None] = None
    value: Union[float, None] = None
    currency: Union[str, None] = None
    kind: Union[str, None] = None
    search_id: Union[str, None] = None


class _Purchase(Conversion, tag="purchase"):
    pass


class _AddToCart(Conversion, tag="add_to_cart"):
    pass


CONVERSION_ALIASES: Final = ("purchase", "add_to_cart")
"""Type names that are conversions of the kind they name."""


# The tutorial's class names, accepted as tags with the same fields.
class _AppOpenAlias(AppOpen, tag="AppOpen"):
    pass


class _SearchAlias(Search, tag="Search"):
    pass


class _ResultsAlias(Results, tag="Results"):
    pass


class _ClickAlias(Click, tag="ClickResult"):
    pass


class _AppCloseAlias(AppClose, tag="AppClose"):
    pass


KIND_OF: Final[dict[type[msgspec.Struct], int]] = {
    AppOpen: APP_OPEN,
    _AppOpenAlias: APP_OPEN,
    Search: SEARCH,
    _SearchAlias: SEARCH,
    Results: RESULTS,
    _ResultsAlias: RESULTS,
    Click: CLICK,
    _ClickAlias: CLICK,
    AppClose: APP_CLOSE,
    _AppCloseAlias: APP_CLOSE,
    Conversion: CONVERSION,
    _Purchase: CONVERSION,
    _AddToCart: CONVERSION,
}

AnyEvent = Union[
    AppOpen,
    Search,
    Results,
    Click,
    AppClose,
    _AppOpenAlias,
    _SearchAlias,
    _ResultsAlias,
    _ClickAlias,
    _AppCloseAlias,
    Conversion,
    _Purchase,
    _AddToCart,
]


# Output records ----------------------------------------------------------------


class Record(msgspec.Struct):
    """An output record; ``KEY`` names the fields that identify one (the SQL primary key)."""

    KEY: ClassVar[tuple[str, ...]] = ()


class SearchRecord(Record):
    """One search and how it went (SPEC 4); fields in output order."""

    KEY = ("session_id", "search_id")

    search_id: str
    session_id: str
    user: str
    query: str
    time: str
    results: int | None
    zero_results: bool
    clicks: int
    clicked: bool
    ctr: float
    first_click_rank: int | None
    reciprocal_rank: float | None
    time_to_first_click: float | None
    abandoned: bool
    reformulated: bool
    long_click: bool
    short_click: bool
    keystrokes: int
    conversions: int
    converted: bool
    conversion_value: float
    dimensions: Any
    """``{NAME: value or None}`` for each ``--dimension`` (``{}`` without)."""


class SessionRecord(Record):
    """One session (SPEC 4); ``duration`` in seconds."""

    KEY = ("session_id",)

    session_id: str
    user: str
    start: str
    end: str
    duration: float
    events: int
    searches: int
    clicked_searches: int
    clicks: int
    ctr: float | None
    end_reason: str
    conversions: int
    conversion_value: float
    success: bool
    time_to_success: float | None
    dimensions: Any
    """The first value of each ``--dimension`` in the session (``None`` when none)."""


class WindowRow(Record, tag_field="level", tag="window"):
    """One rollup window's metrics (SPEC 5); rates are ``None`` without searches."""

    KEY = ("window", "window_start")

    window: str
    window_start: str
    window_end: str
    searches: int
    clicked_searches: int
    ctr: float | None
    ctr_low: float | None
    ctr_high: float | None
    clicks: int
    clicks_per_search: float | None
    avg_click_position: float | None
    zero_result_rate: float | None
    abandonment_rate: float | None
    reformulation_rate: float | None
    long_click_rate: float | None
    mrr: float | None
    median_time_to_first_click: float | None
    conversions: int
    conversion_rate: float | None
    conversion_rate_low: float | None
    conversion_rate_high: float | None
    conversion_value_per_search: float | None
    short_click_rate: float | None


class QueryRow(Record, tag_field="level", tag="query"):
    """One query's metrics within a rollup window (SPEC 5)."""

    KEY = ("window", "window_start", "query")

    window: str
    window_start: str
    window_end: str
    query: str
    searches: int
    ctr: float | None
    ctr_low: float | None
    ctr_high: float | None
    zero_result_rate: float | None
    avg_click_position: float | None


class DimensionRow(Record, tag_field="level", tag="dimension"):
    """One value of one ``--dimension`` within a rollup window; ``value`` is ``None``
    for the searches without one."""

    KEY = ("window", "window_start", "dimension", "value")

    window: str
    window_start: str
    window_end: str
    dimension: str
    value: Any
    searches: int
    ctr: float | None
    ctr_low: float | None
    ctr_high: float | None
    conversion_rate: float | None
    conversion_rate_low: float | None
    conversion_rate_high: float | None
    conversion_value_per_search: float | None
    zero_result_rate: float | None
    abandonment_rate: float | None
    avg_click_position: float | None
    mrr: float | None


class Problem(Record):
    """A record that did not make it: an invalid input line (dead letter) or a late event.

    ``source`` is ``FILE:LINE`` (or ``TOPIC:PARTITION:OFFSET``); ``record`` is the
    line as text (dead letter) or the normalised event (late).
    """

    KEY = ("source",)

    source: str
    reason: str
    record: Any


class OutputKind(StrEnum):
    """The outputs a run writes; each names its record types (rollups have two)."""

    SEARCHES = "searches"
    SESSIONS = "sessions"
    LATE = "late"
    DEAD_LETTER = "dead_letter"
    ROLLUPS = "rollups"

    @property
    def record_types(self) -> tuple[type[Record], ...]:
        return _RECORD_TYPES[self]

    @property
    def record_type(self) -> type[Record]:
        """The record type of a kind that has one."""
        (record_type,) = _RECORD_TYPES[self]
        return record_type


_RECORD_TYPES: Final[dict[OutputKind, tuple[type[Record], ...]]] = {
    OutputKind.SEARCHES: (SearchRecord,),
    OutputKind.SESSIONS: (SessionRecord,),
    OutputKind.LATE: (Problem,),
    OutputKind.DEAD_LETTER: (Problem,),
    OutputKind.ROLLUPS: (WindowRow, QueryRow, DimensionRow),
}

_SCALARS: Final[dict[type, type]] = {
    msgspec.inspect.StrType: str,
    msgspec.inspect.IntType: int,
    msgspec.inspect.BoolType: bool,
    msgspec.inspect.FloatType: float,
    msgspec.inspect.AnyType: object,
}


def field_names(record_type: type[msgspec.Struct]) -> list[str]:
    """A record type's fields in output order."""
    return [f.encode_name for f in msgspec.structs.fields(record_type)]


def field_types(record_type: type[Record]) -> list[tuple[str, type, bool]]:
    """Each field's name, scalar type (``object`` for ``Any``) and whether it is ``X | None``.

    >>> field_types(SearchRecord)[5]
    ('results', <class 'int'>, True)
    """
    info = msgspec.inspect.type_info(record_type)
    assert isinstance(info, msgspec.inspect.StructType)
    out = []
    for f in info.fields:
        t, nullable = f.type, False
        if isinstance(t, msgspec.inspect.UnionType):
            (t,) = [x for x in t.types if not isinstance(x, msgspec.inspect.NoneType)]
            nullable = True
        out.append((f.encode_name, _SCALARS[type(t)], nullable))
    return out
