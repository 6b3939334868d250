"""Hatif's store: the records it keeps (`records`), and `Store`, which keeps them in SQLite or PostgreSQL."""

from hatif.store.db import Store, StoreError
from hatif.store.records import CallRecord, LegRecord, QueueLogEntry, RecordStore, VoicemailMessage

__all__ = ["CallRecord", "LegRecord", "QueueLogEntry", "RecordStore", "Store", "StoreError", "VoicemailMessage"]
