"""The input schema as msgspec structs: one per event type, chosen by the ``type`` tag.

Kept apart from :mod:`search_sessions.events` so that module can be compiled
with mypyc (which does not build msgspec struct classes).
"""

from __future__ import annotations

from typing import Annotated, Final, Union

import msgspec

from .kinds import APP_CLOSE, APP_OPEN, CLICK, RESULTS, SEARCH


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


class Click(_Base, tag="click"):
    item: str
    rank: Union[Annotated[int, msgspec.Meta(ge=1)], None] = None
    search_id: Union[str, None] = None


class AppClose(_Base, tag="app_close"):
    pass


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


KIND_OF: Final[dict[type, int]] = {
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
]
