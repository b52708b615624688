"""The TREC Session Track XML log as an input partition (see :mod:`..core.trec`).

A file (plain or gzip) is one partition, read whole by one worker, streamed through
expat (memory: one interaction, and a block of events). Its events become JSON object
lines the JSON decoder reads (by the native core where there is one), as Parquet's
rows do. Positions are the items' ordinals in the file (events and bad elements,
1-based): an event's ``seq``, and what a resumed partition skips (the file is parsed
again from its start). A dead letter names the XML line of its element instead
(``FILE:LINE``); a late event names its ordinal. A file that is not well-formed XML
stops the run with one line naming it and where.
"""

from __future__ import annotations

from collections.abc import Iterator
from itertools import islice
from typing import Any, Final

from ..control import FAILURE
from ..core.events import EventDecoder, ReasonedDecoder
from ..core.layout import InputLayout
from ..core.time import NEVER
from ..core.trec import TrecItem, XmlError, read_trec
from ..errors import InputError
from .base import Late, LinePartition, PartitionContext
from .inputs import reopen

__all__ = ["TrecPartition"]

BYTES_PER_EVENT: Final = 128
"""A partition reads ``block_bytes / BYTES_PER_EVENT`` events at a time (4096 for 512 KB)."""


class TrecPartition(LinePartition):
    """A TREC Session Track file of sessions (see the module docstring). Should the
    source cut one into lanes, lane 0 reads it all and the others are empty."""

    aligned = True

    def __init__(
        self, ctx: PartitionContext, path: str, block_bytes: int, lane: int = 0, lanes: int = 1
    ) -> None:
        super().__init__(ctx)
        self.path = path
        self.counts_as_input = self.whole = lane == 0
        self.batch = max(16, block_bytes // BYTES_PER_EVENT)
        self.items: Iterator[TrecItem] | None = None
        self.file: Any = None
        self.xml_lines: list[int] = []  # the XML line of each item of the block read
        self.block_start = 0  # the items before it
        self.scan_at: tuple[int, list[int]] = (0, [])  # the same for the pre-scan's block
        layout = InputLayout(time_unit="us", dimensions=ctx.cfg.layout.dimensions)
        self.plain = EventDecoder(ctx.input_index, layout)
        self.reasoned = ReasonedDecoder(ctx.input_index, layout)

    def make_decoder(self) -> EventDecoder:
        # The lines are in our own names, times in µs, whatever --field and --time-unit say.
        return self.plain

    def read(self) -> tuple[list[bytes], bool]:
        if self.items is None:
            self.items = self._open()
            for _ in islice(self.items, self.seq):  # a resumed partition's items read before
                pass
        block = list(islice(self.items, self.batch))
        self.block_start = self.seq
        self.xml_lines = [item.xml_line for item in block]
        reasons = {
            self.seq + i: item.reason for i, item in enumerate(block, 1) if item.reason is not None
        }
        if reasons:
            self.reasoned.reasons = reasons
        self.decoder = self.reasoned if reasons else self.plain
        return [item.line for item in block], len(block) < self.batch

    def _open(self) -> Iterator[TrecItem]:
        if not self.whole:
            return iter(())
        self.file = reopen(self.path)
        return _checked(self.path, read_trec(self.file))

    def _consumed(self, size: int) -> None:
        pass  # positions are items (seq); the byte offset stays 0

    def _dead_letter(self, line: bytes, seq: int, reason: str) -> bytes:
        # Named by the element's XML line, not by its ordinal.
        return super()._dead_letter(line, self.xml_lines[seq - self.block_start - 1], reason)

    def scan_times(self) -> Iterator[list[int | None]]:
        if not self.whole:
            return iter(())
        return self._scan()

    def _scan(self) -> Iterator[list[int | None]]:
        with reopen(self.path) as f:
            items = _checked(self.path, read_trec(f))
            seen = 0
            while block := list(islice(items, 1 << 12)):
                self.scan_at = (seen, [item.xml_line for item in block])
                seen += len(block)
                yield [item.time_us for item in block]

    def first_late(self, times: Iterator[list[int | None]]) -> Late | None:
        late = super().first_late(times)
        if late is None:
            return None
        # Said as the XML line of the element (the scan stopped in its block).
        seen, lines = self.scan_at
        return lines[late[0] - seen - 1], late[1]

    def find_first_time(self) -> None:
        if self.newest != NEVER or self.seq or not self.whole:
            return
        try:
            with reopen(self.path) as f:
                for item in read_trec(f):
                    if item.time_us is not None:
                        self.first_us = item.time_us
                        return
        except (XmlError, InputError):
            return  # (the read says so)

    def close(self) -> None:
        super().close()
        if self.file is not None:
            self.file.close()


def _checked(path: str, items: Iterator[TrecItem]) -> Iterator[TrecItem]:
    """``items``, a file that is not well-formed XML ending the run with one line."""
    try:
        yield from items
    except XmlError as exc:
        FAILURE.append(f"{path}: {exc}")
        raise InputError(FAILURE[-1]) from None
