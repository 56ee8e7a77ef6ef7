"""Connection arguments for ``./dev``'s Airflow database (SQLite, ``AIRFLOW__DATABASE__SQL_ALCHEMY_CONNECT_ARGS``).

SQLite has one writer at a time, and Python's sqlite3 gives up on a held write lock after 5 s. Under load
(a run's tasks, the scheduler, a backfill being created) a write can hold it longer: the API then failed
the Backfill form with 500 or 503, now and then leaving a half-made backfill that refused every later one
with 409, and the scheduler, dag-processor and triggerer died of "database is locked". Waiting longer
turns those failures into a pause."""

CONNECT_ARGS = {"timeout": 60}  # seconds a connection waits for another's write lock
