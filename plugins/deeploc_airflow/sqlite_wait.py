"""Connection arguments for ``./dev``'s Airflow database (SQLite, ``AIRFLOW__DATABASE__SQL_ALCHEMY_CONNECT_ARGS``).

SQLite has one writer at a time, and Python's sqlite3 gives up on a held write lock after 5 s. Under load
(a run's tasks, the scheduler, a backfill being created) a write can hold it longer: the scheduler,
dag-processor and triggerer then died of "database is locked" (``./dev ui`` restarted them), and the API
failed requests such as the Backfill form's. Waiting longer turns those failures into a pause. (It does
not cure every conflict: a transaction that read before another writer committed still fails at once.)"""

CONNECT_ARGS = {"timeout": 60}  # seconds a connection waits for another's write lock
