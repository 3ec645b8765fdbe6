"""Behaviour of SqlStore on every backend the ``store`` fixture is parametrized over."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from gateway.errors import AgentNotFoundError, ConflictError, SessionNotFoundError
from gateway.store import SqlStore, Store, open_store
from tests.unit.store.factories import (
    T0,
    agent_with_session,
    make_agent,
    make_message,
    make_session,
    new_id,
)

# -- agents ---------------------------------------------------------------------------------------


async def test_sql_store_satisfies_the_store_protocol(store: SqlStore) -> None:
    as_protocol: Store = store
    assert await as_protocol.ping()


async def test_agent_crud_round_trip(store: SqlStore) -> None:
    agent = make_agent("Helper", instructions="be brief", tools=[{"name": "search"}])
    await store.create_agent(agent)

    assert await store.get_agent(agent.id) == agent
    assert await store.list_agents() == [agent]

    later = T0 + timedelta(minutes=5)
    renamed = dataclasses.replace(
        agent, name="Helper 2", data={"name": "Helper 2"}, created_at=later, updated_at=later
    )
    assert await store.update_agent(renamed) is True
    stored = await store.get_agent(agent.id)
    assert stored is not None
    assert stored.name == "Helper 2"
    assert stored.data == {"name": "Helper 2"}
    assert stored.updated_at == later
    assert stored.created_at == T0  # created_at is never rewritten

    assert await store.delete_agent(agent.id) is True
    assert await store.get_agent(agent.id) is None
    assert await store.list_agents() == []


async def test_missing_agent_reads_none_and_writes_report_false(store: SqlStore) -> None:
    assert await store.get_agent(new_id()) is None
    assert await store.update_agent(make_agent()) is False
    assert await store.delete_agent(new_id()) is False


async def test_list_agents_orders_by_created_at_then_id_and_pages(store: SqlStore) -> None:
    older = make_agent("older", at=T0 - timedelta(days=1))
    same_time = [make_agent(f"same-{i}") for i in range(3)]
    for agent in [*same_time, older]:
        await store.create_agent(agent)
    expected = [older, *sorted(same_time, key=lambda a: a.id)]

    assert [a.id for a in await store.list_agents()] == [a.id for a in expected]
    page = await store.list_agents(limit=2, offset=1)
    assert [a.id for a in page] == [a.id for a in expected[1:3]]
    with pytest.raises(ValueError, match="limit and offset must be >= 0"):
        await store.list_agents(limit=-1)


async def test_duplicate_agent_name_is_a_conflict_case_insensitively(store: SqlStore) -> None:
    await store.create_agent(make_agent("Support Bot"))

    with pytest.raises(ConflictError) as caught:
        await store.create_agent(make_agent("SUPPORT bot"))

    assert caught.value.code == "conflict"
    assert caught.value.status_code == 409
    assert caught.value.message == "an agent named 'SUPPORT bot' already exists"
    assert caught.value.details == {"field": "name"}
    assert len(await store.list_agents()) == 1


async def test_duplicate_agent_id_is_a_conflict(store: SqlStore) -> None:
    agent = make_agent("one")
    await store.create_agent(agent)

    with pytest.raises(ConflictError) as caught:
        await store.create_agent(dataclasses.replace(agent, name="two"))

    assert caught.value.details == {"field": "id"}


async def test_update_to_the_name_of_another_agent_is_a_conflict(store: SqlStore) -> None:
    first, second = make_agent("First"), make_agent("Second")
    await store.create_agent(first)
    await store.create_agent(second)

    with pytest.raises(ConflictError) as caught:
        await store.update_agent(dataclasses.replace(second, name="FIRST"))

    assert caught.value.details == {"field": "name"}
    assert await store.get_agent(second.id) == second


async def test_update_may_change_the_case_of_its_own_name(store: SqlStore) -> None:
    agent = make_agent("helper")
    await store.create_agent(agent)

    assert await store.update_agent(dataclasses.replace(agent, name="HELPER")) is True
    stored = await store.get_agent(agent.id)
    assert stored is not None
    assert stored.name == "HELPER"


async def test_delete_agent_cascades_to_sessions_and_messages(store: SqlStore) -> None:
    agent, session = await agent_with_session(store)
    other_session = make_session(agent.id)
    await store.create_session(other_session)
    for content in ("a", "b"):
        await store.append_message(make_message(session.id, content))
        await store.append_message(make_message(other_session.id, content))
    kept_agent, kept_session = await agent_with_session(store)
    kept = await store.append_message(make_message(kept_session.id))

    assert await store.delete_agent(agent.id) is True

    assert await store.list_sessions(agent.id) == []
    assert await store.get_session(agent.id, session.id) is None
    assert await store.list_messages(session.id) == []
    assert await store.list_messages(other_session.id) == []
    assert await store.get_session(kept_agent.id, kept_session.id) is not None
    assert await store.list_messages(kept_session.id) == [kept]
    # The names and ids of the deleted rows are free again.
    await store.create_agent(agent)
    await store.create_session(session)


# -- sessions -------------------------------------------------------------------------------------


async def test_session_belongs_to_its_agent(store: SqlStore) -> None:
    agent, session = await agent_with_session(store)
    other_agent, other_session = await agent_with_session(store)

    assert await store.get_session(agent.id, session.id) == session
    assert await store.get_session(other_agent.id, session.id) is None
    assert await store.list_sessions(agent.id) == [session]
    assert await store.list_sessions(other_agent.id) == [other_session]
    assert await store.delete_session(other_agent.id, session.id) is False
    assert await store.get_session(agent.id, session.id) == session


async def test_list_sessions_orders_by_created_at_and_pages(store: SqlStore) -> None:
    agent = make_agent()
    await store.create_agent(agent)
    created = [make_session(agent.id, at=T0 + timedelta(seconds=i)) for i in (2, 0, 1)]
    for session in created:
        await store.create_session(session)
    expected = sorted(created, key=lambda s: s.created_at)

    assert await store.list_sessions(agent.id) == expected
    assert await store.list_sessions(agent.id, limit=1, offset=2) == expected[2:]


async def test_session_for_a_missing_agent_is_not_found(store: SqlStore) -> None:
    with pytest.raises(AgentNotFoundError):
        await store.create_session(make_session(new_id()))


async def test_duplicate_session_id_is_a_conflict(store: SqlStore) -> None:
    _, session = await agent_with_session(store)
    with pytest.raises(ConflictError):
        await store.create_session(session)


async def test_delete_session_removes_only_its_messages(store: SqlStore) -> None:
    agent, session = await agent_with_session(store)
    sibling = make_session(agent.id)
    await store.create_session(sibling)
    await store.append_message(make_message(session.id))
    kept = await store.append_message(make_message(sibling.id))

    assert await store.delete_session(agent.id, session.id) is True
    assert await store.delete_session(agent.id, session.id) is False

    assert await store.get_session(agent.id, session.id) is None
    assert await store.list_messages(session.id) == []
    assert await store.list_messages(sibling.id) == [kept]


async def test_set_session_state_updates_state_and_bumps_updated_at(store: SqlStore) -> None:
    agent, session = await agent_with_session(store)

    await store.set_session_state(session.id, "streaming")

    stored = await store.get_session(agent.id, session.id)
    assert stored is not None
    assert stored.state == "streaming"
    assert stored.updated_at > session.updated_at
    assert stored.created_at == session.created_at
    with pytest.raises(ValueError, match="unknown session state 'sleeping'"):
        await store.set_session_state(session.id, "sleeping")
    await store.set_session_state(new_id(), "completed")  # a vanished session is not an error


# -- messages -------------------------------------------------------------------------------------


async def test_messages_are_ordered_by_seq_across_many_appends(store: SqlStore) -> None:
    _, session = await agent_with_session(store)
    _, other = await agent_with_session(store)
    appended = []
    for i in range(30):
        appended.append(await store.append_message(make_message(session.id, f"m{i}")))
        await store.append_message(make_message(other.id, f"other{i}"))

    listed = await store.list_messages(session.id)

    assert [m.content for m in listed] == [f"m{i}" for i in range(30)]
    assert listed == appended
    seqs = [m.seq for m in listed]
    assert seqs == sorted(seqs)
    assert len(set(seqs)) == 30
    assert seqs[0] > 0


async def test_list_messages_limit_returns_the_last_n_ascending(store: SqlStore) -> None:
    _, session = await agent_with_session(store)
    for i in range(10):
        await store.append_message(make_message(session.id, f"m{i}"))

    assert [m.content for m in await store.list_messages(session.id, limit=3)] == [
        "m7",
        "m8",
        "m9",
    ]
    assert len(await store.list_messages(session.id, limit=50)) == 10
    assert await store.list_messages(session.id, limit=0) == []
    assert await store.list_messages(new_id()) == []


async def test_message_json_fields_round_trip(store: SqlStore) -> None:
    _, session = await agent_with_session(store)
    message = dataclasses.replace(
        make_message(session.id, "", role="assistant"),
        tool_calls=({"id": "c1", "name": "search", "arguments": '{"q": "x"}'},),
        usage={"promptTokens": 3, "completionTokens": 5, "latencyMs": 12.5},
        routing={"provider": "openai", "attempts": [{"provider": "gemini", "outcome": "timeout"}]},
    )
    plain = await store.append_message(make_message(session.id))

    stored = await store.append_message(message)

    assert stored.seq > plain.seq
    assert stored.tool_calls == [{"id": "c1", "name": "search", "arguments": '{"q": "x"}'}]
    listed = await store.list_messages(session.id)
    assert listed == [plain, stored]
    assert (plain.tool_calls, plain.usage, plain.routing) == (None, None, None)
    assert listed[0].tool_calls is None
    assert listed[0].usage is None


async def test_append_bumps_the_session_updated_at(store: SqlStore) -> None:
    agent, session = await agent_with_session(store)

    await store.append_message(make_message(session.id))

    stored = await store.get_session(agent.id, session.id)
    assert stored is not None
    assert stored.updated_at > session.updated_at


async def test_append_to_a_missing_session_is_not_found(store: SqlStore) -> None:
    with pytest.raises(SessionNotFoundError):
        await store.append_message(make_message(new_id()))


async def test_duplicate_message_id_is_a_conflict(store: SqlStore) -> None:
    _, session = await agent_with_session(store)
    message = await store.append_message(make_message(session.id))

    with pytest.raises(ConflictError):
        await store.append_message(message)

    assert await store.list_messages(session.id) == [message]


async def test_concurrent_appends_are_all_stored_with_distinct_seqs(store: SqlStore) -> None:
    _, session = await agent_with_session(store)

    results = await asyncio.gather(
        *(store.append_message(make_message(session.id, f"m{i}")) for i in range(50))
    )

    listed = await store.list_messages(session.id)
    assert len(listed) == 50
    assert len({m.seq for m in listed}) == 50
    assert sorted(results, key=lambda m: m.seq) == listed
    assert {m.content for m in listed} == {f"m{i}" for i in range(50)}


# -- records, timestamps, lifecycle ---------------------------------------------------------------


async def test_timestamps_come_back_timezone_aware_utc(store: SqlStore) -> None:
    plus_two = timezone(timedelta(hours=2))
    local = datetime(2024, 5, 1, 14, 30, 0, 123456, tzinfo=plus_two)
    agent = dataclasses.replace(make_agent(), created_at=local, updated_at=local)
    await store.create_agent(agent)
    session = make_session(agent.id, at=local)
    await store.create_session(session)
    await store.append_message(dataclasses.replace(make_message(session.id), created_at=local))
    await store.set_session_state(session.id, "completed")

    stored_agent = await store.get_agent(agent.id)
    stored_session = await store.get_session(agent.id, session.id)
    [stored_message] = await store.list_messages(session.id)

    assert stored_agent is not None
    assert stored_session is not None
    stamps = [
        stored_agent.created_at,
        stored_agent.updated_at,
        stored_session.created_at,
        stored_session.updated_at,
        stored_message.created_at,
    ]
    assert all(stamp.utcoffset() == timedelta(0) for stamp in stamps)  # aware (naive: None)
    assert stored_agent.created_at == local  # the same instant
    assert stored_agent.created_at.hour == 12


async def test_returned_records_are_immutable_copies(store: SqlStore) -> None:
    agent = make_agent(tools=[{"name": "search"}])
    await store.create_agent(agent)
    first = await store.get_agent(agent.id)
    assert first is not None

    with pytest.raises(dataclasses.FrozenInstanceError):
        first.name = "changed"  # type: ignore[misc]
    first.data["tools"].append({"name": "mutated"})

    again = await store.get_agent(agent.id)
    assert again is not None
    assert again.data == agent.data


async def test_ping_is_true_while_open_and_false_after_close(store_url: str) -> None:
    store = await SqlStore.open(store_url)
    assert await store.ping() is True
    await store.close()
    await store.close()  # idempotent
    assert await store.ping() is False
    with pytest.raises(RuntimeError):
        await store.get_agent(new_id())


async def test_file_store_keeps_its_data_across_close_and_reopen(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    url = "sqlite+aiosqlite:///./data/gateway.db"  # the default shape; ./data does not exist yet
    async with open_store(url) as store:
        agent, session = await agent_with_session(store)
        message = await store.append_message(make_message(session.id, "remember me"))

    assert (tmp_path / "data" / "gateway.db").is_file()
    async with open_store(url) as reopened:
        assert await reopened.get_agent(agent.id) == agent
        stored = await reopened.get_session(agent.id, session.id)
        assert stored is not None
        assert stored == dataclasses.replace(session, updated_at=stored.updated_at)
        assert await reopened.list_messages(session.id) == [message]
        later = await reopened.append_message(make_message(session.id, "and me"))
        assert later.seq > message.seq


async def test_two_stores_opening_one_new_file_at_once_both_work(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'shared.db'}"
    first, second = await asyncio.gather(SqlStore.open(url), SqlStore.open(url))
    try:
        agent, _ = await agent_with_session(first)
        assert await second.get_agent(agent.id) == agent
    finally:
        await first.close()
        await second.close()
