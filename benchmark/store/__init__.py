"""DuckDB results store: schema, migrations, the single writer and read-only readers."""

from benchmark.store.schema import SCHEMA_VERSION
from benchmark.store.store import DEFAULT_DB, Store, UnitRows, default_db_path, open_store

__all__ = ["DEFAULT_DB", "SCHEMA_VERSION", "Store", "UnitRows", "default_db_path", "open_store"]
