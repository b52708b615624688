"""``python -m search_sessions``: the ``search-sessions`` command."""

from .cli import main

main()
