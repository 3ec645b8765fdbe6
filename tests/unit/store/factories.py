"""Records for the store tests: agents, sessions and messages with fresh ids."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from gateway.store import AgentRecord, MessageRecord, SessionRecord, Store

T0 = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)


def new_id() -> str:
    return str(uuid.uuid4())


def make_agent(name: str = "Helper", *, at: datetime = T0, **data: object) -> AgentRecord:
    doc = {"name": name, "model": "openai:gpt-4o-mini", **data}
    return AgentRecord(id=new_id(), name=name, data=doc, created_at=at, updated_at=at)


def make_session(agent_id: str, *, at: datetime = T0, state: str = "idle") -> SessionRecord:
    return SessionRecord(
        id=new_id(),
        agent_id=agent_id,
        state=state,
        user_id="user-1",
        metadata={"tags": ["a", "b"]},
        created_at=at,
        updated_at=at,
    )


def make_message(session_id: str, content: str = "hi", role: str = "user") -> MessageRecord:
    return MessageRecord(
        id=new_id(), session_id=session_id, role=role, content=content, created_at=T0
    )


async def agent_with_session(store: Store) -> tuple[AgentRecord, SessionRecord]:
    agent = make_agent(f"agent-{new_id()}")
    await store.create_agent(agent)
    session = make_session(agent.id)
    await store.create_session(session)
    return agent, session
