"""Chaos: ``kill -9`` of the gateway process at random moments while clients append messages."""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from gateway.sim.cluster import SimCluster
from tests.chaos.support import AGENT, wait_for

ROUNDS = 20
CLIENTS = 4
SEED = 6


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class GatewayProcess:
    """``python -m gateway serve`` on a fixed port, over the simulators, with a SQLite file store."""

    def __init__(self, tmp_path: Path, sims: SimCluster) -> None:
        self.config = tmp_path / "config.yaml"
        self.config.write_text(
            yaml.safe_dump(
                {
                    "storage": {"url": f"sqlite+aiosqlite:///{tmp_path / 'gateway.db'}"},
                    "logging": {"format": "json", "level": "warning"},
                    "models": {"gemini:flash-1.5": "gemini:gemini-1.5-flash"},
                }
            )
        )
        self.env_file = tmp_path / ".env"
        self.env_file.write_text("".join(f"{k}={v}\n" for k, v in sims.env().items()))
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None
        # One client for readiness checks: building one per poll (TLS context) costs ~50 ms of CPU.
        self._probe = httpx.Client(base_url=self.url, timeout=1)
        self._env = {
            k: v for k, v in os.environ.items() if not k.endswith(("_API_KEY", "_ENDPOINT"))
        }

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gateway",
                "serve",
                "--config",
                str(self.config),
                "--env-file",
                str(self.env_file),
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
            ],
            env=self._env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

        def ready() -> bool:
            assert self.proc is not None and self.proc.poll() is None, "gateway exited"
            try:
                return self._probe.get("/ready").status_code == 200
            except httpx.TransportError:
                return False

        wait_for(ready, 30, 0.05)

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)
        self.proc = None

    def stop(self) -> None:
        self._probe.close()
        if self.proc is None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc = None


@pytest.fixture
def gateway_process(tmp_path: Path, sims: SimCluster) -> Iterator[GatewayProcess]:
    process = GatewayProcess(tmp_path, sims)
    try:
        yield process
    finally:
        process.stop()


# A session's history is read back as one page of at most 1,000 messages (the newest): each session
# takes this many sends (two messages each) and a writer then moves on to its next session. A fast
# host sends several hundred a writer in one run.
SESSION_SENDS = 200
SESSIONS = 16


@dataclass
class Session:
    url: str
    sent: list[str] = field(default_factory=list)
    acked: list[tuple[str, str]] = field(default_factory=list)  # content, reply messageId


@dataclass
class Writer:
    """One client appending numbered messages to its own sessions, retrying through outages."""

    name: str
    sessions: list[Session]
    unexpected: list[int] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def acks(self) -> int:
        with self.lock:
            return sum(len(s.acked) for s in self.sessions)

    def run(self, base_url: str, stop: threading.Event) -> None:
        number = 0
        with httpx.Client(base_url=base_url, timeout=10) as http:
            for session in self.sessions:
                while len(session.sent) < SESSION_SENDS and not stop.is_set():
                    number += 1
                    content = f"{self.name}-{number}"
                    session.sent.append(content)
                    try:
                        response = http.post(session.url, json={"role": "user", "content": content})
                    except httpx.TransportError:  # the gateway died under us, or is not back yet
                        time.sleep(0.05)
                        continue
                    if response.status_code == 200:
                        with self.lock:
                            session.acked.append((content, response.json()["messageId"]))
                    else:
                        self.unexpected.append(response.status_code)


def _check_history(session: Session, history: list[dict[str, Any]]) -> None:
    sent = set(session.sent)
    users = [m["content"] for m in history if m["role"] == "user"]
    # Nothing unexpected: every message is one this client sent, or the reply right after one.
    for index, message in enumerate(history):
        if message["role"] == "user":
            assert message["content"] in sent
        else:
            assert message["role"] == "assistant"
            assert index > 0 and history[index - 1]["role"] == "user", index
            # The reply answers the message it follows (the simulator echoes it).
            assert f"you said '{history[index - 1]['content']}'" in message["content"]
    assert len(users) == len(set(users))  # no message stored twice
    position = {m["content"]: i for i, m in enumerate(history) if m["role"] == "user"}
    acked_positions = []
    for content, reply_id in session.acked:
        assert content in position, f"acknowledged {content!r} lost"
        at = position[content]
        acked_positions.append(at)
        assert history[at + 1]["messageId"] == reply_id  # its reply, stored right after it
    assert acked_positions == sorted(acked_positions)  # in the order they were acknowledged
    assert sum(m["messageId"] in {r for _, r in session.acked} for m in history) == len(
        session.acked
    )


@pytest.mark.slow
def test_kill_9_at_random_moments_loses_and_duplicates_no_acknowledged_message(
    gateway_process: GatewayProcess,
) -> None:
    rng = random.Random(SEED)
    gateway_process.start()
    with httpx.Client(base_url=gateway_process.url, timeout=10) as http:
        agent_id = http.post("/agents", json=AGENT).json()["agentId"]
        writers = []
        for i in range(CLIENTS):
            sessions = []
            for _ in range(SESSIONS):
                made = http.post(f"/agents/{agent_id}/sessions", json={}).json()["sessionId"]
                sessions.append(Session(f"/agents/{agent_id}/sessions/{made}/messages"))
            writers.append(Writer(f"w{i}", sessions))

    stop = threading.Event()
    threads = [
        threading.Thread(target=w.run, args=(gateway_process.url, stop), name=w.name)
        for w in writers
    ]
    for thread in threads:
        thread.start()
    try:
        for round_ in range(ROUNDS):
            if round_:
                gateway_process.start()
            acked = sum(w.acks() for w in writers)
            wait_for(lambda acked=acked: sum(w.acks() for w in writers) >= acked + 2, 20)
            time.sleep(rng.uniform(0, 0.25))  # a random moment, requests in flight
            gateway_process.kill9()
        gateway_process.start()
        acked = [w.acks() for w in writers]
        wait_for(lambda: all(w.acks() > a for w, a in zip(writers, acked, strict=True)), 20)
    finally:
        stop.set()
        for thread in threads:
            thread.join(30)

    with httpx.Client(base_url=gateway_process.url, timeout=10) as http:
        assert sum(w.acks() for w in writers) >= 2 * ROUNDS
        for writer in writers:
            assert writer.unexpected == []
            assert len(writer.sessions[-1].sent) < SESSION_SENDS  # it never ran out of sessions
            for session in writer.sessions:
                history = http.get(session.url, params={"limit": 1000}).json()["messages"]
                assert len(history) < 1000  # the whole history, not the newest page of it
                _check_history(session, history)
