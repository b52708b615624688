"""How an input names things: its fields, its event types, its epoch unit.

Logs that are not in this project's spelling (``anon_id`` for ``user``,
``query_submitted`` for ``search``, epoch milliseconds) are read through an
:class:`InputLayout`. The JSON decoder stays a typed msgspec decoder: the
structs it decodes into are built for the layout (:func:`event_types`) with the
input's names, so a mapped log decodes as fast as one in our spelling.

>>> layout = InputLayout(fields=(("user", "anon_id"),), types=(("search", "q"),))
>>> import msgspec
>>> ev = msgspec.json.decode(b'{"type": "q", "anon_id": 7, "time": 0, "query": "x"}',
...                          type=event_types(layout))
>>> ev.user, KIND_OF_TYPE[type(ev)]
(7, 1)
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Any, Final, Union

import msgspec

from .schema import (
    KIND_NAMES,
    KIND_OF,
    AnyEvent,
)

__all__ = [
    "KIND_OF_TYPE",
    "DimensionValue",
    "InputLayout",
    "event_types",
    "time_type",
    "type_names",
]

DimensionValue = Union[str, int, float, bool, None]
"""What a ``--dimension`` field may hold (anything else makes the record invalid)."""


@dataclass(frozen=True)
class InputLayout:
    """Field names (``(ours, theirs)`` pairs), extra type names, the epoch unit, the
    dimension fields read from every event (``--dimension``) and the one currency
    conversions may have (``--currency``; ``None``: not checked)."""

    fields: tuple[tuple[str, str], ...] = ()
    types: tuple[tuple[str, str], ...] = ()
    time_unit: str = "auto"
    dimensions: tuple[str, ...] = ()
    currency: str | None = None

    @property
    def plain(self) -> bool:
        """Whether the input uses this project's own names and has no dimensions."""
        return not self.fields and not self.types and not self.dimensions

    def name_of(self, field: str) -> str:
        """The input's name for one of our fields.

        >>> InputLayout(fields=(("user", "anon_id"),)).name_of("user")
        'anon_id'
        """
        return dict(self.fields).get(field, field)


KIND_OF_TYPE: Final[dict[type[msgspec.Struct], int]] = dict(KIND_OF)
"""The kind of every struct :func:`event_types` builds (the plain ones included)."""

_TAGS: Final[dict[int, list[str]]] = {}
"""Every type name each kind has (ours, then the tutorial's), from the input structs."""
_FIELDS: Final[dict[int, list[tuple[Any, ...]]]] = {}
"""Each kind's fields (``user`` and ``time`` first) as :func:`msgspec.defstruct` takes them."""
for _cls, _kind in KIND_OF.items():
    _TAGS.setdefault(_kind, []).append(str(_cls.__struct_config__.tag))
    _FIELDS.setdefault(
        _kind,
        [
            (f.name, f.type) if f.required else (f.name, f.type, f.default)
            for f in msgspec.structs.fields(_cls)
        ],
    )


def type_names() -> dict[str, str]:
    """Every type name an input may use without ``--type``, and the event type it names
    (``Search``, the tutorial's, names ``search``)."""
    return {tag: KIND_NAMES[kind] for kind, tags in _TAGS.items() for tag in tags}


@cache
def event_types(layout: InputLayout) -> Any:
    """The union of structs a line of this layout decodes into (tagged by its ``type``
    field, under the input's name for it): one struct per type name, our names and
    the tutorial's always included, plus the layout's."""
    if layout.plain:
        return AnyEvent
    rename = {ours: theirs for ours, theirs in layout.fields if ours != "type"}
    tag_field = layout.name_of("type")
    structs: list[Any] = []
    extra = [(f"dim_{i}", DimensionValue, None) for i in range(len(layout.dimensions))]
    rename.update({f"dim_{i}": name for i, name in enumerate(layout.dimensions)})
    for kind, name in enumerate(KIND_NAMES):
        tags = list(_TAGS[kind])
        for ours, theirs in layout.types:
            if ours == name and theirs not in tags:
                tags.append(theirs)
        for tag in tags:
            struct = msgspec.defstruct(
                f"{name}_{len(structs)}",
                _FIELDS[kind] + extra,
                tag_field=tag_field,
                tag=tag,
                rename=rename or None,
                gc=False,
            )
            KIND_OF_TYPE[struct] = kind
            structs.append(struct)
    return Union[tuple(structs)]


@cache
def time_type(layout: InputLayout) -> Any:
    """A struct of an event's time field alone, under the input's name for it: decoding
    a line into it skips the rest of the record (the pre-scan of ``--order auto``)."""
    (time_field,) = [f for f in _FIELDS[0] if f[0] == "time"]
    rename = {"time": layout.name_of("time")}
    return msgspec.defstruct("EventTime", [time_field], rename=rename, gc=False)
