"""SQLite storage: connections, migrations, the events table, and queries per table family."""

from whaled.store.db import Database, StoreError, Transaction
from whaled.store.events import Event, EventNotifier, read_events_after
from whaled.store.migrate import MigrationError

__all__ = [
    "Database",
    "Event",
    "EventNotifier",
    "MigrationError",
    "StoreError",
    "Transaction",
    "read_events_after",
]
