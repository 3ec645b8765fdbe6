"""The redactor that every log line and error message passes through."""

from __future__ import annotations

import msgspec

from gateway.observability.logging import _json_bytes, redacting
from gateway.redaction import Made, Redactor

KEY = "sk-live-0123456789abcdefghij"


def test_redactor_hides_a_key_and_any_eight_character_piece_of_it() -> None:
    redactor = Redactor([KEY])

    assert redactor(f"bad key {KEY}") == "bad key [redacted]"
    assert "89abcdef" not in redactor("suffix 89abcdef seen")
    assert redactor("nothing secret here") == "nothing secret here"


def test_redactor_answers_repeated_text_the_same_way() -> None:
    redactor = Redactor([KEY])
    text = f"key={KEY[:12]}"

    assert redactor(text) == redactor(text) == "key=[redacted]" + KEY[8:12]


def test_redactor_forgets_what_it_saw_when_the_secrets_change() -> None:
    redactor = Redactor([KEY])
    other = "gsk_ZYXWVUTSRQPONMLKJIHG"
    line = f"upstream said {other}"
    assert redactor(line) == line  # not a secret yet, and remembered as clean

    redactor.update([KEY, other])  # a reload brings a new provider key

    assert other not in redactor(line)


def test_log_redaction_passes_over_text_the_gateway_made_and_scans_the_rest() -> None:
    process = redacting(Redactor([KEY]))
    # Made text is taken as it is, without a scan: even this piece of the key is left alone.
    made = Made(KEY[:8] + "0a1b2c3d")
    event = process(None, "info", {"request_id": made, "path": f"/v1/{KEY}", "n": 3})
    assert event["path"] == "/v1/[redacted]"
    assert event["request_id"] == made
    assert event["n"] == 3
    # A made id is written as the plain string it is.
    assert msgspec.json.decode(_json_bytes(event)) == {
        "request_id": made,
        "path": "/v1/[redacted]",
        "n": 3,
    }
