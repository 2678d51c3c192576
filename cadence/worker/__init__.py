"""The worker: leases and heartbeats, concurrency slots, per-mailbox lanes of provider calls, the
passes of due work and the APScheduler runtime that ticks them.

No SQL here: rows are read and written by `store.queue` and the use cases in `cadence.services`;
the worker decides when, in which order and under which lease. Modules: `options`, `leases`,
`slots`, `lanes`, `passes`, `runtime`.
"""
