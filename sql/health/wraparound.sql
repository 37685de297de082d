-- Transaction ID wraparound (the same on PostgreSQL 12 to 18): the database with the
-- oldest datfrozenxid and the one with the oldest datminmxid, with their ages. Every
-- database counts, those that refuse connections (datallowconn = false, template0)
-- included: autovacuum must freeze them too, and a forgotten one stops the cluster.
SELECT x.datname AS xid_database,
       x.age AS xid_age,
       m.datname AS mxid_database,
       m.age AS mxid_age
  FROM (SELECT datname::text, age(datfrozenxid)::bigint AS age
          FROM pg_database ORDER BY 2 DESC, 1 LIMIT 1) AS x,
       (SELECT datname::text, mxid_age(datminmxid)::bigint AS age
          FROM pg_database ORDER BY 2 DESC, 1 LIMIT 1) AS m
