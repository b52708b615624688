"""Event kinds, as small ints (the ``kind`` slot of an event tuple)."""

from typing import Final

APP_OPEN: Final = 0
SEARCH: Final = 1
RESULTS: Final = 2
CLICK: Final = 3
APP_CLOSE: Final = 4

KIND_NAMES: Final = ("app_open", "search", "results", "click", "app_close")
