"""Several hubs as one: the bus between them, cluster-wide presence, node liveness,
and worker processes sharing a port."""
