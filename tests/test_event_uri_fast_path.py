"""The fast subset check of `source` URIs accepts only what RFC 3986 accepts."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rfc3986_validator import validate_rfc3986

from eventlog.event import _SIMPLE_URI, _is_uri_reference

# Characters of URIs, and a few that URIs must escape, so that both sides of
# the subset's border are drawn.
URI_ALPHABET = "abcxyzAZ019+-._~!$&'()*,;=:@/?#%[] \"<>\\^`{|}"


@given(st.text(alphabet=URI_ALPHABET, max_size=40))
@settings(max_examples=3000)
def test_fast_path_accepts_only_valid_uris(text: str) -> None:
    if _SIMPLE_URI.fullmatch(text) is not None:
        assert validate_rfc3986(text, rule="URI_reference")


@given(st.text(alphabet=URI_ALPHABET, max_size=40))
@settings(max_examples=1000)
def test_uri_check_agrees_with_rfc3986_validator(text: str) -> None:
    assert _is_uri_reference(text) == bool(validate_rfc3986(text, rule="URI_reference"))


@pytest.mark.parametrize(
    ("text", "fast"),
    [
        ("https://ttd.apps.altinn.no/ttd/app/instances/50001/0f8fad5b-d9cb-469f", True),
        ("urn:altinn:systemx", True),
        ("https://example.com:8443/a?b=c#d", True),
        ("file:///etc/hosts", True),
        ("https://user@example.com/", False),  # User information: left to the full check.
        ("https://example.com/%41", False),  # Percent-escapes: left to the full check.
        ("https://x:y/", False),  # A port that is not a number: invalid.
        ("/relative/path", False),  # A relative reference: left to the full check.
    ],
)
def test_fast_path_cases(text: str, fast: bool) -> None:
    assert (_SIMPLE_URI.fullmatch(text) is not None) == fast
    assert _is_uri_reference(text) == bool(validate_rfc3986(text, rule="URI_reference"))
