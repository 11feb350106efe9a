"""PostgreSQL: the pool (``pool``), the schema (``migrate``) and the queries (``store``)."""
