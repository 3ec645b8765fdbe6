"""One conversation turn in the store: ``get_agent_for_session``, ``begin_turn``, ``finish_turn``.

Every test runs on in-memory SQLite, file SQLite and PostgreSQL (the ``store`` fixture).
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path

import pytest

from gateway.errors import ConflictError, SessionNotFoundError
from gateway.store import HistoryMessage, MessageRecord, SqlStore, open_store
from tests.unit.store.factories import (
    T0,
    agent_with_session,
    make_message,
    make_session,
    new_id,
)


def reply_for(session_id: str, content: str = "answer") -> MessageRecord:
    return MessageRecord(
        id=new_id(),
        session_id=session_id,
        role="assistant",
        content=content,
        created_at=T0,
        usage={"promptTokens": 3, "completionTokens": 5, "latencyMs": 1.5},
        routing={"decision": "primary", "attempts": [{"provider": "openai"}]},
    )


def as_history(records: list[MessageRecord]) -> list[HistoryMessage]:
    """What ``begin_turn`` returns of these stored messages."""
    return [HistoryMessage(m.id, m.seq, m.role, m.content, m.tool_calls) for m in records]


async def state_of(store: SqlStore, agent_id: str, session_id: str) -> str:
    session = await store.get_session(agent_id, session_id)
    assert session is not None
    return session.state


# -- get_agent_for_session ------------------------------------------------------------------------


async def test_get_agent_for_session_reads_the_agent_and_whether_the_session_is_its_own(
    store: SqlStore,
) -> None:
    agent, session = await agent_with_session(store)
    _, foreign = await agent_with_session(store)

    assert await store.get_agent_for_session(agent.id, session.id) == (agent, True)
    assert await store.get_agent_for_session(agent.id, foreign.id) == (agent, False)
    assert await store.get_agent_for_session(agent.id, new_id()) == (agent, False)
    assert await store.get_agent_for_session(new_id(), session.id) == (None, False)


# -- begin_turn -----------------------------------------------------------------------------------


async def test_begin_turn_stores_incoming_in_order_and_returns_the_history_with_them(
    store: SqlStore,
) -> None:
    agent, session = await agent_with_session(store)
    earlier = await store.append_message(make_message(session.id, "earlier"))
    incoming = [make_message(session.id, "one"), make_message(session.id, "two")]

    history = await store.begin_turn(agent.id, session.id, incoming, history_limit=500)

    assert history is not None
    assert [m.content for m in history] == ["earlier", "one", "two"]
    assert [m.id for m in history] == [earlier.id, incoming[0].id, incoming[1].id]
    assert history[0].seq < history[1].seq < history[2].seq
    assert as_history(await store.list_messages(session.id)) == history
    stored = await store.get_session(agent.id, session.id)
    assert stored is not None
    assert stored.state == "streaming"
    assert stored.updated_at > session.updated_at


async def test_begin_turn_returns_only_the_last_history_limit_messages_ascending(
    store: SqlStore,
) -> None:
    agent, session = await agent_with_session(store)
    for i in range(5):
        await store.append_message(make_message(session.id, f"m{i}"))

    history = await store.begin_turn(
        agent.id, session.id, [make_message(session.id, "new")], history_limit=3
    )

    assert history is not None
    assert [m.content for m in history] == ["m3", "m4", "new"]
    assert await store.begin_turn(agent.id, session.id, [], history_limit=0) == []
    with pytest.raises(ValueError, match="limit"):
        await store.begin_turn(agent.id, session.id, [], history_limit=-1)


async def test_begin_turn_reads_history_newest_first_until_take_refuses(store: SqlStore) -> None:
    agent, session = await agent_with_session(store)
    for i in range(6):
        await store.append_message(make_message(session.id, f"m{i}"))
    offered: list[str] = []

    def take(content: str) -> bool:
        offered.append(content)
        return len(offered) <= 3  # room for three messages

    history = await store.begin_turn(
        agent.id, session.id, [make_message(session.id, "new")], history_limit=500, take=take
    )

    assert history is not None
    assert [m.content for m in history] == ["m4", "m5", "new"]
    assert offered == ["new", "m5", "m4", "m3"]  # nothing older than the first refusal is read
    assert len(await store.list_messages(session.id)) == 7  # the read stops, the writes do not


async def test_begin_turn_on_foreign_session_writes_nothing(store: SqlStore) -> None:
    agent, _ = await agent_with_session(store)
    other, foreign = await agent_with_session(store)

    history = await store.begin_turn(
        agent.id, foreign.id, [make_message(foreign.id, "intruder")], history_limit=500
    )

    assert history is None
    assert await store.list_messages(foreign.id) == []
    assert await store.get_session(other.id, foreign.id) == foreign  # state and updated_at kept


async def test_begin_turn_on_missing_session_writes_nothing(store: SqlStore) -> None:
    agent, _ = await agent_with_session(store)
    missing = new_id()

    assert await store.begin_turn(agent.id, missing, [], history_limit=500) is None
    assert (
        await store.begin_turn(agent.id, missing, [make_message(missing)], history_limit=500)
        is None
    )
    assert await store.list_messages(missing) == []


async def test_begin_turn_with_a_taken_message_id_writes_nothing(store: SqlStore) -> None:
    agent, session = await agent_with_session(store)
    taken = await store.append_message(make_message(session.id, "first"))
    fresh = make_message(session.id, "fresh")
    clash = MessageRecord(
        id=taken.id, session_id=session.id, role="user", content="clash", created_at=T0
    )

    with pytest.raises(ConflictError):
        await store.begin_turn(agent.id, session.id, [fresh, clash], history_limit=500)

    assert await store.list_messages(session.id) == [taken]  # "fresh" was rolled back too
    assert await state_of(store, agent.id, session.id) == "idle"


async def test_begin_turn_keeps_incoming_when_upstream_later_fails(store: SqlStore) -> None:
    agent, session = await agent_with_session(store)
    incoming = make_message(session.id, "keep me")

    await store.begin_turn(agent.id, session.id, [incoming], history_limit=500)
    # ... the upstream call fails: the service marks the session errored, nothing else.
    assert await store.finish_turn(session.id, None, "errored") is None

    assert [m.id for m in await store.list_messages(session.id)] == [incoming.id]
    assert await state_of(store, agent.id, session.id) == "errored"
    # The session is not stuck: the next turn works and sees the kept message.
    history = await store.begin_turn(
        agent.id, session.id, [make_message(session.id, "again")], history_limit=500
    )
    assert history is not None
    assert [m.content for m in history] == ["keep me", "again"]
    assert await state_of(store, agent.id, session.id) == "streaming"


async def test_begin_turn_is_visible_to_another_store_on_the_same_database(
    shared_store_url: str,
) -> None:
    async with open_store(shared_store_url) as store, open_store(shared_store_url) as replica:
        agent, session = await agent_with_session(store)
        assert await replica.get_agent_for_session(agent.id, session.id) == (agent, True)
        history = await store.begin_turn(
            agent.id, session.id, [make_message(session.id, "from one replica")], history_limit=50
        )
        assert as_history(await replica.list_messages(session.id)) == history
        assert await state_of(replica, agent.id, session.id) == "streaming"
        reply = await replica.finish_turn(session.id, reply_for(session.id), "completed")
        assert (await store.list_messages(session.id))[-1] == reply
        assert await state_of(store, agent.id, session.id) == "completed"


async def test_concurrent_turns_on_one_session_each_see_their_own_message_last(
    store: SqlStore,
) -> None:
    agent, session = await agent_with_session(store)
    incoming = [make_message(session.id, f"m{i}") for i in range(12)]

    histories = await asyncio.gather(
        *(store.begin_turn(agent.id, session.id, [m], history_limit=500) for m in incoming)
    )

    stored = await store.list_messages(session.id)
    assert sorted(m.id for m in stored) == sorted(m.id for m in incoming)
    assert len({m.seq for m in stored}) == len(stored)
    for message, history in zip(incoming, histories, strict=True):
        assert history is not None
        # seq follows commit order: everything committed before this turn, then its own message.
        assert history[-1].id == message.id
        assert history == as_history(stored[: len(history)])


# -- finish_turn ----------------------------------------------------------------------------------


async def test_finish_turn_stores_the_reply_and_the_state_together(store: SqlStore) -> None:
    agent, session = await agent_with_session(store)
    history = await store.begin_turn(
        agent.id, session.id, [make_message(session.id, "question")], history_limit=500
    )
    assert history is not None

    reply = await store.finish_turn(session.id, reply_for(session.id), "completed")

    assert reply is not None
    assert reply.seq > history[-1].seq
    assert reply.routing == {"decision": "primary", "attempts": [{"provider": "openai"}]}
    stored = await store.list_messages(session.id)
    assert as_history(stored) == [*history, *as_history([reply])]
    assert stored[-1] == reply
    assert await state_of(store, agent.id, session.id) == "completed"


async def test_finish_turn_with_a_taken_reply_id_changes_nothing(store: SqlStore) -> None:
    agent, session = await agent_with_session(store)
    history = await store.begin_turn(
        agent.id, session.id, [make_message(session.id)], history_limit=500
    )
    assert history is not None
    clash = MessageRecord(
        id=history[0].id, session_id=session.id, role="assistant", content="x", created_at=T0
    )

    with pytest.raises(ConflictError):
        await store.finish_turn(session.id, clash, "completed")

    assert as_history(await store.list_messages(session.id)) == history
    assert await state_of(store, agent.id, session.id) == "streaming"


async def test_finish_turn_on_a_deleted_session(store: SqlStore) -> None:
    agent, session = await agent_with_session(store)
    await store.begin_turn(agent.id, session.id, [make_message(session.id)], history_limit=500)
    assert await store.delete_session(agent.id, session.id)

    with pytest.raises(SessionNotFoundError):
        await store.finish_turn(session.id, reply_for(session.id), "completed")
    assert await store.finish_turn(session.id, None, "errored") is None  # nothing left to mark
    assert await store.list_messages(session.id) == []


async def test_finish_turn_rejects_unknown_states_and_replies_for_other_sessions(
    store: SqlStore,
) -> None:
    agent, session = await agent_with_session(store)
    other = make_session(agent.id)
    await store.create_session(other)

    with pytest.raises(ValueError, match="state"):
        await store.finish_turn(session.id, None, "done")
    with pytest.raises(ValueError, match="another session"):
        await store.finish_turn(session.id, reply_for(other.id), "completed")
    assert await store.list_messages(other.id) == []
    assert await state_of(store, agent.id, session.id) == "idle"


# -- SQLite runs off the event loop ---------------------------------------------------------------


async def test_sqlite_waits_for_another_process_lock_without_blocking_the_event_loop(
    tmp_path: Path,
) -> None:
    path = tmp_path / "locked.db"
    async with open_store(f"sqlite+aiosqlite:///{path}") as store:
        agent, session = await agent_with_session(store)
        other_process = sqlite3.connect(path, isolation_level=None)
        try:
            other_process.execute("BEGIN IMMEDIATE")  # holds the write lock
            turn = asyncio.create_task(
                store.begin_turn(
                    agent.id, session.id, [make_message(session.id, "waits")], history_limit=5
                )
            )
            started = time.perf_counter()
            await asyncio.sleep(0.2)  # the loop keeps running while the store waits on the lock
            assert time.perf_counter() - started < 0.5
            assert not turn.done()
            other_process.execute("COMMIT")
            history = await asyncio.wait_for(turn, timeout=5)
        finally:
            other_process.close()

    assert history is not None
    assert [m.content for m in history] == ["waits"]
