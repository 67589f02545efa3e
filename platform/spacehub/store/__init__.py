"""The store: SQLAlchemy 2 models, the engine/session factory and Alembic migrations. SQL is the source of truth."""
