"""``gateway.server``: what the served process does beyond ``create_app``."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from gateway.redaction import Redactor
from gateway.server import build_served_app, settle_heap
from tests.conftest import SettingsFactory


@pytest.fixture
def unfrozen() -> Iterator[None]:
    gc.unfreeze()
    yield
    gc.unfreeze()  # the rest of the test process keeps collecting everything


@pytest.mark.usefixtures("unfrozen")
def test_served_app_freezes_the_startup_heap(settings_factory: SettingsFactory) -> None:
    settings = settings_factory()
    app = build_served_app(settings, None, None, Redactor())
    assert settle_heap in app.on_startup
    assert gc.get_freeze_count() == 0
    settle_heap(app)
    # Objects created before the freeze (the app among them) are no longer tracked by collections.
    assert gc.get_freeze_count() > 1000
