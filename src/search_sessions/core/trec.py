"""The TREC Session Track log (``sessiontrack2013.xml``; 2011, 2012 and 2014 alike): XML
sessions of interactions into events.

A ``<session>`` holds ``<interaction>`` elements (a query, the results shown, the
clicks made) and may end with a ``<currentquery>``. Each becomes events, as JSON
object lines in this project's names with the time in epoch microseconds:

- an interaction: a ``search`` (its ``<query>``, at its ``starttime``), a ``results``
  (the ``<url>`` of every ``<result>``, by their ``rank``, at the same time) when it has
  ``<results>``, and a ``click`` per ``<clicked><click>`` (its ``<url>``, its ``<rank>``,
  at its ``starttime``); all with ``search_id`` ``SESSION-INTERACTION`` (their ``num``);
- a currentquery: a ``search`` without results, ``search_id`` ``SESSION-current``.

``user`` is the session's ``userid``, else its ``num``. A time ``t`` (float seconds) is
relative to the session's ``starttime`` ``S`` when the session has one and ``t < S``
(``S + t``), else epoch seconds; a session ``starttime`` that is not a number (2012's
time of day) counts as none. A result or click without ``<url>`` is named by its
``<clueweb12id>`` (or ``<clueweb09id>``). Unknown elements and attributes are ignored.

An element that cannot be an event (no query, no or a bad time, a bad click rank, an
item without a url) is an item with a reason and its XML: a dead letter; a bad
interaction takes its results and clicks with it. Every item names the XML line of its
element.

>>> xml = b'''<sessiontrack2013><session num="4" starttime="1000" userid="7">
... <interaction num="1" starttime="2.5"><query>dogs</query>
... <results><result rank="2"><url>b</url></result><result rank="1"><url>a</url></result>
... </results><clicked><click starttime="9"><rank>1</rank><url>a</url></click></clicked>
... </interaction><currentquery starttime="1500"><query>cats</query></currentquery>
... <interaction num="2"><query>x</query></interaction></session></sessiontrack2013>'''
>>> for item in TrecParser().feed(xml, final=True):
...     print(item.xml_line, item.reason or item.line.decode().strip())
2 {"type":"search","user":"7","time":1002500000,"query":"dogs","search_id":"4-1"}
3 {"type":"results","user":"7","time":1002500000,"items":["a","b"],"search_id":"4-1"}
4 {"type":"click","user":"7","time":1009000000,"item":"a","rank":1,"search_id":"4-1"}
5 {"type":"search","user":"7","time":1500000000,"query":"cats","search_id":"4-current"}
6 interaction has no starttime
"""

from __future__ import annotations

from collections.abc import Iterator
from decimal import ROUND_FLOOR, Decimal, InvalidOperation
from typing import Any, Final, NamedTuple, Protocol
from xml.parsers import expat
from xml.sax.saxutils import escape

import msgspec

from .schema import MAX_RANK
from .time import MAX_US, MIN_US

__all__ = ["Readable", "TrecItem", "TrecParser", "XmlError", "read_trec"]

_MAX_SECONDS: Final = Decimal(MAX_US) / 1_000_000
_MILLION: Final = Decimal(1_000_000)
_QUOTE: Final = {'"': "&quot;"}
_encode = msgspec.json.encode


class TrecItem(NamedTuple):
    """One event, or one element that is none (``reason`` says why)."""

    line: bytes
    """The event as a JSON object line; for an element that is none, the element as XML."""
    xml_line: int
    """The line of the element in the XML file (1-based)."""
    time_us: int | None
    """The event's time (``None`` for an element that is none)."""
    reason: str | None = None


class XmlError(ValueError):
    """The input is not well-formed XML (``line``, ``column``: 1-based)."""

    def __init__(self, line: int, column: int, message: str) -> None:
        super().__init__(f"not well-formed XML at line {line}, column {column}: {message}")
        self.line, self.column = line, column


class _Node:
    """An element of an interaction (or currentquery) being read."""

    __slots__ = ("attrs", "children", "line", "name", "tag")

    def __init__(self, tag: str, attrs: dict[str, str], line: int) -> None:
        self.tag, self.name, self.attrs, self.line = tag, tag.lower(), attrs, line
        self.children: list[_Node | str] = []

    def find(self, name: str) -> _Node | None:
        return next(iter(self.findall(name)), None)

    def findall(self, name: str) -> list[_Node]:
        return [c for c in self.children if isinstance(c, _Node) and c.name == name]

    def text(self, name: str) -> str | None:
        """The text of the first child element ``name`` (stripped), ``None`` without one."""
        node = self.find(name)
        if node is None:
            return None
        return "".join(c for c in node.children if isinstance(c, str)).strip()

    def xml(self) -> bytes:
        """The element as XML text again (for a dead letter's record)."""
        return "".join(self._parts()).encode()

    def _parts(self) -> Iterator[str]:
        attrs = "".join(f' {k}="{escape(v, _QUOTE)}"' for k, v in self.attrs.items())
        yield f"<{self.tag}{attrs}>"
        for c in self.children:
            if isinstance(c, str):
                yield escape(c)
            else:
                yield from c._parts()
        yield f"</{self.tag}>"


class _Session:
    __slots__ = ("currents", "interactions", "num", "start", "user")

    def __init__(self, attrs: dict[str, str], ordinal: int) -> None:
        self.num = attrs.get("num", "").strip() or str(ordinal)
        self.user = attrs.get("userid", "").strip() or self.num
        self.start = _seconds(attrs.get("starttime"))
        self.interactions = self.currents = 0


class TrecParser:
    """Reads a TREC Session Track file fed to it in chunks (streaming: only the
    interaction being read is held), into :class:`TrecItem` s in file order."""

    def __init__(self) -> None:
        p = expat.ParserCreate()
        p.buffer_text = True
        p.StartElementHandler = self._start
        p.EndElementHandler = self._end
        p.CharacterDataHandler = self._text
        self._parser = p
        self._out: list[TrecItem] = []
        self._open: list[_Node] = []  # the interaction being read, down to the element open
        self._session: _Session | None = None
        self._sessions = 0

    def feed(self, data: bytes, final: bool = False) -> list[TrecItem]:
        """The items the elements ended in ``data`` make (``final``: the input ends)."""
        try:
            self._parser.Parse(data, final)
        except expat.ExpatError as exc:
            raise XmlError(exc.lineno, exc.offset + 1, expat.ErrorString(exc.code)) from None
        out, self._out = self._out, []
        return out

    def _start(self, tag: str, attrs: dict[str, str]) -> None:
        line = self._parser.CurrentLineNumber
        if self._open:
            node = _Node(tag, attrs, line)
            self._open[-1].children.append(node)
            self._open.append(node)
            return
        name = tag.lower()
        if name == "session":
            self._sessions += 1
            self._session = _Session(attrs, self._sessions)
        elif name in ("interaction", "currentquery"):
            self._open.append(_Node(tag, attrs, line))

    def _end(self, tag: str) -> None:
        if self._open:
            node = self._open.pop()
            if not self._open:
                self._interaction(node)
        elif tag.lower() == "session":
            self._session = None

    def _text(self, text: str) -> None:
        if self._open:
            self._open[-1].children.append(text)

    def _bad(self, node: _Node, reason: str) -> None:
        self._out.append(TrecItem(node.xml(), node.line, None, reason))

    def _event(self, node: _Node, time_us: int, event: dict[str, Any]) -> None:
        self._out.append(TrecItem(_encode(event) + b"\n", node.line, time_us))

    def _interaction(self, node: _Node) -> None:
        s = self._session
        if s is None:
            return self._bad(node, f"{node.name} outside a session")
        if node.name == "interaction":
            s.interactions += 1
            search_id = f"{s.num}-{node.attrs.get('num', '').strip() or s.interactions}"
        else:
            s.currents += 1
            search_id = f"{s.num}-current" + (f"-{s.currents}" if s.currents > 1 else "")
        query = node.text("query")
        if query is None:
            return self._bad(node, f"{node.name} has no query")
        t = _time(node, s)
        if isinstance(t, str):
            return self._bad(node, t)
        head = {"type": "search", "user": s.user, "time": t}
        self._event(node, t, {**head, "query": query, "search_id": search_id})
        if node.name != "interaction":
            return None
        results = node.find("results")
        if results is not None:
            self._results(results, s, t, search_id)
        for clicked in node.findall("clicked"):
            for click in clicked.findall("click"):
                self._click(click, s, search_id)
        return None

    def _results(self, results: _Node, s: _Session, t: int, search_id: str) -> None:
        shown = results.findall("result")
        ranks = [_rank(r.attrs.get("rank")) for r in shown]
        if all(r is not None for r in ranks):  # else as they come
            shown = [r for _, _, r in sorted(zip(ranks, range(len(shown)), shown, strict=True))]
        items = []
        for result in shown:
            url = _url(result)
            if url is None:
                return self._bad(result, "result has no url (the results are left out)")
            items.append(url)
        head = {"type": "results", "user": s.user, "time": t}
        return self._event(results, t, {**head, "items": items, "search_id": search_id})

    def _click(self, click: _Node, s: _Session, search_id: str) -> None:
        url = _url(click)
        if url is None:
            return self._bad(click, "click has no url")
        text = click.text("rank")
        if text is None:
            text = click.attrs.get("rank")
        rank = None if text is None else _rank(text)
        if text is not None and rank is None:
            return self._bad(click, f"click rank {text!r} is not an integer from 1 to 2**63-1")
        t = _time(click, s)
        if isinstance(t, str):
            return self._bad(click, t)
        event: dict[str, Any] = {"type": "click", "user": s.user, "time": t, "item": url}
        if rank is not None:
            event["rank"] = rank
        return self._event(click, t, {**event, "search_id": search_id})


class Readable(Protocol):
    def read(self, size: int, /) -> bytes: ...


def read_trec(file: Readable, chunk: int = 1 << 16) -> Iterator[TrecItem]:
    """The items of a TREC Session Track file, read ``chunk`` bytes at a time; raises
    :class:`XmlError` where it is not well-formed."""
    parser = TrecParser()
    while True:
        data = file.read(chunk)
        yield from parser.feed(data, final=not data)
        if not data:
            return


def _seconds(text: str | None) -> Decimal | None:
    """A number of seconds (a decimal, exactly), ``None`` for anything else."""
    if text is None:
        return None
    try:
        value = Decimal(text.strip())
    except InvalidOperation:
        return None
    return value if value.is_finite() else None


def _time(node: _Node, s: _Session) -> int | str:
    """The element's ``starttime`` in epoch µs (see the module docstring), or why not."""
    what, text = node.name, node.attrs.get("starttime")
    if text is None:
        return f"{what} has no starttime"
    t = _seconds(text)
    if t is None or t < 0:
        return f"{what} starttime {text!r} is not a number of seconds"
    if s.start is not None and t < s.start:
        t += s.start
    if t > _MAX_SECONDS:
        return f"{what} starttime {text!r} is after the year 9999"
    us = int((t * _MILLION).to_integral_value(rounding=ROUND_FLOOR))
    if not MIN_US <= us <= MAX_US:
        return f"{what} starttime {text!r} is out of range"
    return us


def _rank(text: str | None) -> int | None:
    """A rank: an integer from 1 to 2**63-1, else ``None``."""
    if text is None:
        return None
    text = text.strip()
    if not (text.isascii() and text.isdigit()) or len(text) > 19:
        return None
    rank = int(text)
    return rank if 1 <= rank <= MAX_RANK else None


def _url(node: _Node) -> str | None:
    """A result's or click's item: its url, else its ClueWeb document id."""
    for name in ("url", "clueweb12id", "clueweb09id"):
        text = node.text(name)
        if text:
            return text
    return None
