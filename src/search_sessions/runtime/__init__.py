"""Running a flow: this process (:mod:`.process`), a local cluster (:mod:`.cluster`),
the whole job with its summary (:mod:`.run`), recovery, signals, and progress
reporting with Prometheus (:mod:`.progress`)."""
