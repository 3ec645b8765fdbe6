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
    thresholds = gc.get_threshold()
    yield
    gc.unfreeze()  # the rest of the test process keeps collecting everything
    gc.set_threshold(*thresholds)


@pytest.mark.usefixtures("unfrozen")
def test_served_app_freezes_the_startup_heap(settings_factory: SettingsFactory) -> None:
    settings = settings_factory()
    app = build_served_app(settings, None, None, Redactor())
    assert settle_heap in app.on_startup
    assert gc.get_freeze_count() == 0
    settle_heap(app)
    # Objects created before the freeze (the app among them) are no longer tracked by collections.
    assert gc.get_freeze_count() > 1000
    # and the young generation is collected ten times less often than by default
    assert gc.get_threshold()[0] == 7_000
