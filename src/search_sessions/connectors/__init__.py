"""Connectors: the only code that knows URL schemes and file layouts.

:mod:`.specs` reads specs (``-``, paths, ``kafka://``, ``sqlite:///``,
``postgresql://``); :mod:`.registry` turns them into partitions and sinks;
:mod:`.base` is the partition contract (decode lines into per-shard batches);
:mod:`.files`, :mod:`.kafka` and :mod:`.sql` are the back-ends; :mod:`.source`
is the one Bytewax source over every input partition of a run.
"""
