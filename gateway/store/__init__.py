"""Persistence of agents, sessions and messages: the ``Store`` contract and its SQL backend."""

from gateway.store.base import Store
from gateway.store.records import (
    SESSION_STATES,
    AgentRecord,
    HistoryMessage,
    MessageRecord,
    SessionRecord,
)
from gateway.store.sql import SqlStore, open_store

__all__ = [
    "SESSION_STATES",
    "AgentRecord",
    "HistoryMessage",
    "MessageRecord",
    "SessionRecord",
    "SqlStore",
    "Store",
    "open_store",
]
