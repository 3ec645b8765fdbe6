"""The persistence contract of the gateway: what the API layer may ask of any store backend.

Implementations must not cache rows in-process (several gateway replicas may share one database)
and must take the ordering of messages from the database. ``SqlStore`` in ``gateway.store.sql`` is
the implementation for SQLite and PostgreSQL.
"""

from __future__ import annotations

from typing import Protocol

from gateway.store.records import AgentRecord, MessageRecord, SessionRecord


class Store(Protocol):
    """Agents, their sessions and the sessions' messages.

    Errors: ``ConflictError`` (409) on uniqueness clashes, ``AgentNotFoundError`` /
    ``SessionNotFoundError`` when a parent row is missing on insert, ``ValueError`` for arguments
    no caller should pass (unknown session state, negative limit/offset).
    """

    async def create_agent(self, agent: AgentRecord) -> None:
        """Insert; ``ConflictError`` if the name exists (case-insensitively) or the id is taken."""
        ...

    async def get_agent(self, agent_id: str) -> AgentRecord | None: ...

    async def list_agents(self, *, limit: int = 100, offset: int = 0) -> list[AgentRecord]:
        """One page of agents, ordered by ``created_at`` then ``id``."""
        ...

    async def update_agent(self, agent: AgentRecord) -> bool:
        """Replace name, data and ``updated_at`` (``created_at`` is kept). ``False`` if missing;
        ``ConflictError`` if the new name belongs to another agent."""
        ...

    async def delete_agent(self, agent_id: str) -> bool:
        """Delete the agent, its sessions and their messages in one transaction."""
        ...

    async def create_session(self, session: SessionRecord) -> None:
        """Insert; ``AgentNotFoundError`` if the agent is missing, ``ConflictError`` if the id is
        taken."""
        ...

    async def get_session(self, agent_id: str, session_id: str) -> SessionRecord | None:
        """``None`` if missing or if it belongs to another agent."""
        ...

    async def list_sessions(
        self, agent_id: str, *, limit: int = 100, offset: int = 0
    ) -> list[SessionRecord]:
        """One page of the agent's sessions, ordered by ``created_at`` then ``id``."""
        ...

    async def delete_session(self, agent_id: str, session_id: str) -> bool:
        """Delete the session (only if it belongs to ``agent_id``) and its messages."""
        ...

    async def set_session_state(self, session_id: str, state: str) -> None:
        """Set the state and bump ``updated_at``; a no-op if the session no longer exists."""
        ...

    async def append_message(self, message: MessageRecord) -> MessageRecord:
        """Insert in one transaction and return the message with its database-assigned ``seq``.
        Also bumps the session's ``updated_at``. ``SessionNotFoundError`` if the session is
        missing, ``ConflictError`` if the message id is taken."""
        ...

    async def list_messages(
        self, session_id: str, *, limit: int | None = None
    ) -> list[MessageRecord]:
        """Messages ascending by ``seq``; with ``limit``, the last ``limit`` ones (ascending)."""
        ...

    async def ping(self) -> bool:
        """``True`` if the database answers (for ``/ready``); never raises."""
        ...
