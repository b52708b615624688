"""The core: plain Python, no Bytewax and no I/O.

In dataflow order: :mod:`.time` (event time), :mod:`.schema` (event kinds,
input structs, output records), :mod:`.events` (decoding lines into event
tuples), :mod:`.sessions` (the :class:`~.sessions.Sessionizer`: sessions and
the watermark), :mod:`.searches` (per-search and session records),
:mod:`.rollups` (window sums). Each is tested directly, without a dataflow.
"""
