"""The persistence contract of the gateway: what the API layer may ask of any store backend.

Implementations must not cache rows in-process (several gateway replicas may share one database)
and must take the ordering of messages from the database. ``SqlStore`` in ``gateway.store.sql`` is
the implementation for SQLite and PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

from gateway.store.records import AgentRecord, HistoryMessage, MessageRecord, SessionRecord


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

    # -- one conversation turn: a read, then one transaction before and one after the model call --

    async def get_agent_for_session(
        self, agent_id: str, session_id: str
    ) -> tuple[AgentRecord | None, bool]:
        """In one read: the agent (``None`` if missing) and whether ``session_id`` is one of its
        sessions (``False`` if missing or another agent's)."""
        ...

    async def begin_turn(
        self,
        agent_id: str,
        session_id: str,
        incoming: Sequence[MessageRecord],
        *,
        history_limit: int,
        take: Callable[[str], bool] | None = None,
    ) -> list[HistoryMessage] | None:
        """In one transaction: store ``incoming`` in order (database-assigned ``seq``), set the
        session ``streaming`` and bump ``updated_at``, and return its last ``history_limit``
        messages ascending by ``seq`` (the new ones included) as ``HistoryMessage``. With
        ``take``, the history is read newest first and stops at the first message whose content
        ``take`` refuses (the caller's token window is full), so older rows are never read.
        Committed on return, so the
        incoming messages are kept whatever happens next. ``None``, with nothing written, if the
        session is missing or belongs to another agent; ``ConflictError`` (nothing written) if a
        message id is taken."""
        ...

    async def finish_turn(
        self, session_id: str, reply: MessageRecord | None, state: str
    ) -> MessageRecord | None:
        """In one transaction: set ``state`` (bumping ``updated_at``) and store ``reply`` if given,
        returned with its ``seq``. With a reply: ``SessionNotFoundError`` if the session is gone,
        ``ConflictError`` if the id is taken (nothing written either way); without one: a no-op
        if the session is gone, like :meth:`set_session_state`."""
        ...

    async def ping(self) -> bool:
        """``True`` if the database answers (for ``/ready``); never raises."""
        ...
