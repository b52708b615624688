"""Input layouts besides JSON Lines: CSV, TSV and the AOL query log.

Every decoder here has :class:`~search_sessions.core.events.EventDecoder`'s
interface, ``decode(raw_line, seq)``, and returns an :data:`Event`, a list of
events (several from one line, or none: a header or a rule line) or a one-line
reason for the dead-letter output. A decoder is made for one input partition
by :func:`make_decoder`; the decoders subclass ``EventDecoder`` (the partitions hold
one), and the CSV one turns rows into events with its :meth:`~EventDecoder.event`.

**CSV and TSV** (:class:`CsvDecoder`): the first line is a header row naming the
columns; the columns are the JSON fields, under the input's names (``--field
user=anon_id`` makes the column ``anon_id`` the user; ``--type`` names work in
the ``type`` column). Each line is one row: a quoted cell may hold the delimiter
and doubled quotes (``"a, ""b"" c"``), but not a line break. An empty cell is a
missing field (an empty ``rank`` or ``search_id`` is none), except that ``query``
and a click's ``item`` keep the empty string. ``items`` is a JSON array when its cell starts
with ``[`` (``["a", "b|c"]``), else a ``|``-separated list (``a|b|c``); an empty
cell is the empty list. Numbers in cells are read as the JSON field's type (a
``rank`` of ``3``), and times exactly as in JSON (ISO 8601 with any offset, or epoch
numbers in ``--time-unit``). Unknown columns are ignored; a line equal to the header
(a file's first line, or a header repeated in concatenated files) holds no event.

>>> d = CsvDecoder(0, header=b"type,user,time,query,items,item,rank\\n")
>>> d.decode(b"search,u1,2024-01-01T00:00:05Z,dogs,,,\\n", seq=2)
(1704067205000000, 0, 2, 1, 'u1', 'dogs', None, None)
>>> d.decode(b'results,u1,1704067206,,"fido|rover, jr",,', seq=3)[5]
('fido', 'rover, jr')
>>> d.decode(b"click,u1,1704067207000,,,rover,2", seq=4)
(1704067207000000, 0, 4, 3, 'u1', 'rover', 2, None)
>>> d.decode(b"click,u1,1704067207", seq=5)
'row has 3 cells, the header 7'

**The AOL query log** (:class:`AolDecoder`, the 2006 collection's
``user-ct-test-collection-*.txt``): tab-separated ``AnonID, Query, QueryTime,
ItemRank, ClickURL`` under a header line of those names, the time
``YYYY-MM-DD HH:MM:SS`` in UTC. A row without ``ItemRank`` is a search; a row with
one is a click on ``ClickURL`` at that rank, made on the search of that user,
query and time, whose row the log leaves out when it is followed by a click: the
decoder puts that search before its first click (it remembers each user's last
search to know which). Clicks take the search's time. Columns after the fifth are
ignored, and so are lines of dashes (annotated copies of the log).

>>> a = AolDecoder(0)
>>> a.decode(b"AnonID\\tQuery\\tQueryTime\\tItemRank\\tClickURL\\n", seq=1)
[]
>>> search, click = a.decode(b"142\\tdogs\\t2006-03-01 07:17:12\\t1\\thttp://dogs.com\\n", seq=2)
>>> search
(1141197432000000, 0, 2, 1, '142', 'dogs', None, None)
>>> click
(1141197432000000, 0, 2, 3, '142', 'http://dogs.com', 1, None)
>>> a.decode(b"142\\tdogs\\t2006-03-01 07:17:12\\t3\\thttp://pets.com\\n", seq=3)
[(1141197432000000, 0, 3, 3, '142', 'http://pets.com', 3, None)]
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterator
from typing import Any, Final, get_args

import msgspec

from .events import PLAIN, Event, EventDecoder, time_values
from .layout import KIND_OF_TYPE, InputLayout, event_types
from .schema import CLICK, CONVERSION, MAX_RANK, SEARCH
from .time import BadTime, parse_time

__all__ = [
    "HEADED",
    "LINE_FORMATS",
    "AolDecoder",
    "CsvDecoder",
    "aol_header",
    "aol_layout",
    "make_decoder",
]

LINE_FORMATS: Final = frozenset({"jsonl", "csv", "tsv", "aol"})
"""The input formats read line by line, by a decoder :func:`make_decoder` makes."""
HEADED: Final = frozenset({"csv", "tsv"})
"""The formats whose decoder needs the input's header row (its first line)."""

_BOM: Final = b"\xef\xbb\xbf"
_convert = msgspec.convert


class _Feed:
    """The lines a persistent :func:`csv.reader` reads: one at a time, as they are set
    (a reader made per line costs four times as much)."""

    __slots__ = ("line",)

    def __init__(self) -> None:
        self.line: str | None = None

    def __iter__(self) -> Iterator[str]:
        return self

    def __next__(self) -> str:
        line = self.line
        if line is None:
            raise StopIteration
        self.line = None
        return line


class CsvDecoder(EventDecoder):
    """Rows of a CSV (or, with ``delimiter="\\t"``, TSV) input under its ``header`` row
    (see the module's description). Rows become the layout's structs as JSON objects
    do, and then events through :meth:`EventDecoder.event`, so times, types and
    field names are read exactly as in JSON Lines."""

    __slots__ = (
        "_by_tag",
        "_delimiter",
        "_feed",
        "_header_line",
        "_item",
        "_items",
        "_keep_empty",
        "_names",
        "_reader",
        "_tag",
        "_time_at",
    )

    def __init__(
        self, part: int, layout: InputLayout = PLAIN, header: bytes = b"", delimiter: str = ","
    ) -> None:
        super().__init__(part, layout)
        self._delimiter = delimiter
        self._feed = _Feed()
        self._reader = csv.reader(self._feed, delimiter=delimiter, strict=True)
        self._header_line = header.rstrip(b"\r\n")
        text = self._header_line.removeprefix(_BOM).decode("utf-8", errors="replace")
        try:
            names = self._cells(text) if text else []
        except csv.Error:  # unbalanced quotes: every row will say it has the wrong width
            names = text.split(delimiter)
        self._names: list[str] = [name.strip() for name in names]
        # The struct of each type name: converting to a union is 20 times slower.
        self._by_tag: dict[str, Any] = {
            struct.__struct_config__.tag: struct for struct in get_args(event_types(layout))
        }
        self._tag = layout.name_of("type")
        self._items = layout.name_of("items")
        self._keep_empty = frozenset({layout.name_of("query"), layout.name_of("item")})
        self._item = layout.name_of("item")
        time_name = layout.name_of("time")
        self._time_at = self._names.index(time_name) if time_name in self._names else -1

    @property
    def delimiter(self) -> str:
        return self._delimiter

    @property
    def header_line(self) -> bytes:
        """The header row, without its line end (a row equal to it holds no event)."""
        return self._header_line

    @property
    def names(self) -> list[str]:
        """The header row's cells, stripped: the columns' names."""
        return self._names

    def _cells(self, text: str) -> list[str]:
        if '"' not in text:
            return text.split(self._delimiter)
        self._feed.line = text
        try:
            return next(self._reader)
        finally:
            self._feed.line = None

    def decode(self, raw: bytes, seq: int) -> Event | str | list[Event]:
        line = raw.rstrip(b"\r\n")
        if line == self._header_line:
            return []
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError as exc:
            return f"not UTF-8 ({exc.reason} at byte {exc.start})"
        if not text or text.isspace():
            return "blank line"
        try:
            cells = self._cells(text)
        except csv.Error as exc:
            if str(exc) == "unexpected end of data":
                return (
                    "a quoted cell does not end on its line (cells spanning lines: not supported)"
                )
            return f"bad quoting: {exc}"
        names = self._names
        if len(cells) != len(names):
            return f"row has {len(cells)} cells, the header {len(names)}"
        keep_empty = self._keep_empty
        row: dict[str, Any] = {
            n: c for n, c in zip(names, cells, strict=True) if c or n in keep_empty
        }
        items = self._items
        if items in row:
            cell = row[items]
            if cell.startswith("["):
                try:
                    row[items] = msgspec.json.decode(cell)
                except msgspec.DecodeError as exc:
                    return f"`{items}` is not a JSON array: {exc}"
            else:
                row[items] = cell.split("|")
        elif items in names:
            row[items] = []
        tag = row.pop(self._tag, None)
        struct = self._by_tag.get(tag) if tag is not None else None
        if struct is None:
            if tag is None:
                return self._missing(self._tag)
            return f"unknown event type: Invalid value {tag!r} - at `$.{self._tag}`"
        if KIND_OF_TYPE[struct] == CONVERSION and row.get(self._item) == "":
            del row[self._item]  # a conversion's item is optional: empty is none
        try:
            ev = _convert(row, struct, strict=False)
        except msgspec.ValidationError as exc:
            text = str(exc)
            if text.startswith("Object missing required field"):
                return self._missing(text.rpartition(" ")[2].strip("`"))
            return text
        return self.event(ev, seq)

    def times(self, lines: list[bytes]) -> list[int | None]:
        """Each row's event time (see :meth:`EventDecoder.times`), from its time cell
        alone, split as :meth:`decode` splits the row.

        >>> d = CsvDecoder(0, header=b"type,time,user\\n")
        >>> d.times([b"type,time,user\\n", b"search,1,u\\n", b'x,"2",u\\n', b"search,,u", b"a,3"])
        [None, 1000000, 2000000, None, None]
        """
        at, width = self._time_at, len(self._names)
        if at < 0:
            return [None] * len(lines)
        header = self._header_line
        values: list[str | None] = []
        append = values.append
        for raw in lines:
            line = raw.rstrip(b"\r\n")
            if line == header:
                append(None)
                continue
            # Bytes that are not UTF-8 make the row invalid, or are no time in its cell.
            try:
                cells = self._cells(line.decode("utf-8", "replace"))
            except csv.Error:
                append(None)
                continue
            # An empty cell is a missing field, as in decode.
            append((cells[at] or None) if len(cells) == width else None)
        return time_values(values, self.unit)

    def _missing(self, name: str) -> str:
        """Why a row without ``name`` (an empty cell, or no such column) is invalid."""
        text = f"Object missing required field `{name}`"
        if name not in self._names:
            return f"{text} (the header has no such column: {', '.join(self._names)})"
        return text


_AOL_USER: Final = frozenset({"anonid", "userid", "user_id", "user id", "uid"})
_AOL_TIME: Final = frozenset({"querytime", "query_time", "timestamp", "time"})
_AOL_ROW: Final = re.compile(
    rb"[^\t\r\n]+\t[^\t\r\n]*\t *\d{4}-\d\d-\d\d \d\d:\d\d:\d\d *(?:\t|\r?\n|$)"
)


def aol_header(line: bytes) -> bool:
    """Whether ``line`` is the header of a log in the AOL layout: the AOL log's own
    (``AnonID, Query, QueryTime, ...``) or an annotated copy's, such as Webis-SMC-12's
    (``UserID, Query, TimeStamp, ClickRank, ClickDomain, MissionID, ...``).

    >>> aol_header(b"AnonID\\tQuery\\tQueryTime\\tItemRank\\tClickURL\\n")
    True
    >>> aol_header(b"UserID\\tQuery\\tTimeStamp\\tClickRank\\tClickDomain\\tMissionID\\tComment")
    True
    >>> aol_header(b"user\\tquery\\ttime\\ttype")  # a TSV of events (it has a type column)
    False
    """
    cells = line.removeprefix(_BOM).rstrip(b"\r\n").lower().split(b"\t")
    return (
        len(cells) >= 3
        and cells[0].strip().decode("latin-1") in _AOL_USER
        and cells[1].strip() == b"query"
        and cells[2].strip().decode("latin-1") in _AOL_TIME
        and b"type" not in cells
    )


def aol_layout(first: bytes) -> bool:
    """Whether an input whose first line is ``first`` is in the AOL layout: that line is
    its header (:func:`aol_header`), or a row of one (a copy without the header:
    ``USER<tab>QUERY<tab>YYYY-MM-DD HH:MM:SS[<tab>...]``).

    >>> aol_layout(b"2722\\tyahoo\\t2006-03-01 08:51:35\\t1\\thttp://www.yahoo.com\\t1\\t\\n")
    True
    >>> aol_layout(b'{"type": "search", "user": "u"}')
    False
    """
    return aol_header(first) or _AOL_ROW.match(first.removeprefix(_BOM)) is not None


class AolDecoder(EventDecoder):
    """Rows of the AOL 2006 query log (see the module's description)."""

    __slots__ = ("_last", "_last_t", "_last_time")

    def __init__(self, part: int, layout: InputLayout = PLAIN) -> None:
        super().__init__(part, layout)
        # Each user's latest search, (query, time): a click row on another one brings
        # its search in. The state is not snapshotted: after a restart a search may be
        # emitted again, and the sessionizer drops exact duplicates.
        self._last: dict[str, tuple[str, int]] = {}
        self._last_time = ""  # consecutive rows often share a time: parse it once
        self._last_t = 0

    def decode(self, raw: bytes, seq: int) -> Event | str | list[Event]:
        line = raw.rstrip(b"\r\n")
        if not line.strip(b" \t-"):
            return []  # blank, or a rule of dashes
        if line[:1].isalpha() and aol_header(line):
            return []  # the header
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError as exc:
            return f"not UTF-8 ({exc.reason} at byte {exc.start})"
        cols = text.split("\t", 5)
        if len(cols) < 3:
            return (
                f"AOL row has {len(cols)} column(s), not AnonID, Query, QueryTime[, ItemRank, ...]"
            )
        user = cols[0].strip()
        query = cols[1]
        when = cols[2].strip()
        if not user:
            return "AOL row without an AnonID"
        if when == self._last_time:
            t = self._last_t
        else:
            try:
                t = parse_time(when, self.unit)
            except BadTime as exc:
                return str(exc)
            self._last_time, self._last_t = when, t
        rank_text = cols[3].strip() if len(cols) > 3 else ""
        part = self.part
        if not rank_text:
            self._last[user] = (query, t)
            return (t, part, seq, SEARCH, user, query, None, None)
        url = cols[4].strip() if len(cols) > 4 else ""
        try:
            rank = int(rank_text)
        except ValueError:
            return f"bad ItemRank {rank_text!r}: not an integer"
        if rank < 1:
            return f"bad ItemRank {rank}: ranks start at 1"
        if rank > MAX_RANK:
            return f"bad ItemRank {rank}: ranks end at {MAX_RANK}"
        if not url:
            return f"click row (ItemRank {rank}) without a ClickURL"
        click: Event = (t, part, seq, CLICK, user, url, rank, None)
        if self._last.get(user) == (query, t):
            return [click]
        self._last[user] = (query, t)
        # Same seq: the search sorts first by kind.
        return [(t, part, seq, SEARCH, user, query, None, None), click]

    def times(self, lines: list[bytes]) -> list[int | None]:
        """Each row's event time (see :meth:`EventDecoder.times`): the rows decoded whole
        (cheap already: a time shared by consecutive rows is parsed once).

        >>> rows = [b"AnonID\\tQuery\\tQueryTime", b"1\\tq\\t1970-01-01 00:00:01\\t1\\tu"]
        >>> AolDecoder(0).times(rows)
        [None, 1000000]
        """
        out: list[int | None] = []
        for seq, line in enumerate(lines, 1):
            ev = self.decode(line, seq)
            if isinstance(ev, tuple):
                out.append(ev[0])
            else:  # a search and its click share a time; a reason, or a header, has none
                out.append(ev[0][0] if isinstance(ev, list) and ev else None)
        return out


def make_decoder(
    fmt: str, part: int, layout: InputLayout = PLAIN, header: bytes | None = None
) -> EventDecoder:
    """The decoder of one input partition in ``fmt`` (``jsonl``, ``csv``, ``tsv`` or
    ``aol``); ``header`` is the input's first line, needed for the :data:`HEADED` ones.

    >>> make_decoder("tsv", 0, header=b"user\\ttype\\ttime\\n").decode(b"u\\tapp_open\\t0", 2)
    (0, 0, 2, 0, 'u', None, None, None)
    """
    if fmt == "jsonl":
        return EventDecoder(part, layout)
    if fmt in HEADED:
        return CsvDecoder(part, layout, header or b"", "\t" if fmt == "tsv" else ",")
    if fmt == "aol":
        return AolDecoder(part, layout)
    raise ValueError(f"no line decoder for input format {fmt!r}")
