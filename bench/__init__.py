"""chathub's benchmark: a load generator, scenarios, and a reference server to compare with.

Run ``python -m bench`` (or ``make bench``; ``ARGS="--quick"`` for a smoke run).
The harness starts a chathub daemon and the reference server (:mod:`bench.reference`)
as subprocesses on 127.0.0.1, runs the scenarios of :mod:`bench.scenarios` against
both with the load generator of :mod:`bench.loadgen`, and prints a table and one
JSON line per scenario. See docs/performance.md for the latest figures.

Modules: :mod:`~bench.wsproto` (the cheap WebSocket client), :mod:`~bench.loadgen`
(connections, senders, generator processes), :mod:`~bench.hist` (latency histogram),
:mod:`~bench.servers` (servers under test), :mod:`~bench.scenarios`,
:mod:`~bench.report`, :mod:`~bench.profile` (py-spy), :mod:`~bench.cli`.
"""
