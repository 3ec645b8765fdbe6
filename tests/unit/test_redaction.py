"""The redactor that every log line and error message passes through."""

from __future__ import annotations

from gateway.redaction import Redactor

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
