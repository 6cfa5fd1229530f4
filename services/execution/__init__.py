"""The execution service: orders in, paper fills out, every result stored."""

from services.execution.paper import OrderView, PaperVenue, VenueParams
from services.execution.service import ExecutionService
from services.execution.store import (
    COLUMNS,
    PostgresStore,
    ResultStore,
    SqliteStore,
    StoredResult,
    open_store,
)

__all__ = [
    "COLUMNS",
    "ExecutionService",
    "OrderView",
    "PaperVenue",
    "PostgresStore",
    "ResultStore",
    "SqliteStore",
    "StoredResult",
    "VenueParams",
    "open_store",
]
