"""The state store: SQLAlchemy models and sessions."""
from ivfarm.store.session import Store

__all__ = ["Store"]
