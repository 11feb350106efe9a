"""Fault tests: private services on loopback TCP, a fault schedule, a runner and a checker.

- :mod:`tests.chaos.services`: a PostgreSQL and a Valkey of a test's own on loopback TCP
  ports, so that a test can stop, kill, restart or slow them (through
  :class:`tests.faultproxy.FaultProxy`) without touching the suite's shared servers;
- :mod:`tests.chaos.schedule`: a fixed-seed schedule of faults;
- :mod:`tests.chaos.clients`: bounded-rate chat clients that log what they saw;
- :mod:`tests.chaos.checker`: verifies the clients' logs against PostgreSQL;
- :mod:`tests.chaos.runner`: three hubs, fifty clients, the schedule, then the checker
  (``make chaos SEED=1 DURATION=600``).
"""
