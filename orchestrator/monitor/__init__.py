"""The monitor: submits a campaign's jobs and watches them until each is done, failed or abandoned.

`lifecycle` holds the job state machine and the pure per-job decision; `probes` gathers facts
(output file, start/termination commands); `loop` is the only place with side effects.
"""
