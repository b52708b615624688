"""The Bytewax dataflow: routing of shards to workers, the shard and rollup steps,
:func:`~.flow.build_flow` for whole runs, and :func:`~.operator.sessionize` for
people who write their own flows."""
