"""Paths and helpers shared by the deployment tests (static checks of Dockerfile, Compose, Kubernetes).

External tools are never skipped silently: a test that needs one fails when it is missing, unless the
named variable is set to 1 (a developer's laptop without the tool). CI installs them all.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"
COMPOSE_DIR = REPO / "deploy" / "compose"
COMPOSE_FILE = COMPOSE_DIR / "compose.yaml"
K8S_DIR = REPO / "deploy" / "k8s"
PROMETHEUS_DIR = REPO / "deploy" / "prometheus"
DEFAULT_CONFIG = REPO / "config" / "default.yaml"
COMPOSE_CONFIG = COMPOSE_DIR / "gateway.yaml"
K8S_CONFIG = K8S_DIR / "config" / "gateway.yaml"
DASHBOARDS_DIR = REPO / "dashboards"


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def load_yaml_docs(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc]


def venv_tool(name: str) -> str | None:
    """A console script of the test environment (dev extra), else one on PATH."""
    candidate = Path(sys.executable).parent / name
    if candidate.is_file() and os.access(candidate, os.X_OK):
        return str(candidate)
    return shutil.which(name)


def require_tool(name: str, *, allow_env: str, install_hint: str) -> str:
    """The path of ``name``; fails the test when it is missing (skips only with ``allow_env=1``)."""
    path = venv_tool(name)
    if path is not None:
        return path
    message = f"{name} is not available: {install_hint}"
    if os.environ.get(allow_env) == "1":
        pytest.skip(f"{message}; skipped because {allow_env}=1")
    pytest.fail(f"{message}, or set {allow_env}=1 to skip this check on a laptop")
