"""Storage: SQLAlchemy Core tables, repositories, a unit of work, and Alembic migrations.

The domain never sees any of this. Repositories map rows to and from domain objects;
:class:`~slicelab.store.uow.UnitOfWork` binds them to one transaction that rolls back unless
committed. SQLite (WAL, foreign keys, busy timeout) and PostgreSQL (psycopg 3) both work; every
storage test runs on both.

Modules: ``tables`` (the schema as metadata), ``types`` (UTC datetimes), ``engine``
(``make_engine``), ``migrate`` (``upgrade``, run at start-up by :mod:`slicelab.bootstrap`),
``base`` (``Repository``, ``Page``), one repository module per noun (``members``, ``projects``,
``slices``, ``audit``) and ``uow``.

How to add a table
------------------
1. Describe it in ``tables.py`` (or a new module imported there) on the shared ``metadata``;
   use :class:`~slicelab.store.types.UTCDateTime` for every time.
2. Add a revision in ``migrations/versions/``: copy the layout of ``0001_clearinghouse.py``,
   name it ``NNNN_<what>.py``, set ``revision = "NNNN"`` and ``down_revision`` to the current
   head (one straight chain; ``slicelab.store.migrate.head_revision()`` names it), and write
   ``op.create_table(...)`` by hand to match the metadata, plus ``downgrade``. To draft it,
   call ``alembic.command.revision(migrate.alembic_config(connection), message,
   autogenerate=True)`` against a database at the current head, then tidy the result.
3. Write a repository (subclass :class:`~slicelab.store.base.Repository`) that maps rows to
   domain objects, and attach it in ``UnitOfWork.__enter__``.
4. The test ``tests/integration/store/test_store_migrations.py`` checks that the migrations
   build exactly the metadata, on SQLite and PostgreSQL.
"""

__all__: list[str] = []
