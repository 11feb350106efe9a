"""chathub's benchmark: load generators, scenarios, and peers to compare with.

Run ``python -m bench`` (or ``make bench``; ``ARGS="--quick"`` for a smoke run).
The harness starts a chathub daemon and its peers — the reference
(:mod:`bench.reference`, bare ``websockets``), Node ``ws`` and the Go hub
(:mod:`bench.peers`; skipped with a line saying why when they cannot run) — as
subprocesses on 127.0.0.1, runs the scenarios of :mod:`bench.scenarios` against
each with the Go load generator (``bench/gen``) or, without Go, the Python one
(:mod:`bench.loadgen`), and prints a table and one JSON line per scenario. See
docs/performance.md for the latest figures.

Modules: :mod:`~bench.wsproto` (the Python generator's WebSocket client),
:mod:`~bench.loadgen` (connections, senders, generator processes; the driver of the
Go generator), :mod:`~bench.hist` (latency histogram), :mod:`~bench.servers`
(servers under test), :mod:`~bench.peers` (installing and building peers and the
Go generator), :mod:`~bench.scenarios`, :mod:`~bench.report`, :mod:`~bench.profile`
(py-spy), :mod:`~bench.cli`.
"""
