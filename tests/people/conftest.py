"""People tests run on SQLite and PostgreSQL: the `db_url`, `open_store` and `store` fixtures of tests/store."""

import importlib.util
from pathlib import Path

_spec = importlib.util.spec_from_file_location("_store_conftest", Path(__file__).parents[1] / "store" / "conftest.py")
assert _spec is not None and _spec.loader is not None
_module = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_module)
db_url = _module.db_url
open_store = _module.open_store
store = _module.store
