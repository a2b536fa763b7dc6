from __future__ import annotations

import pytest

from wscompat.drafts import ALL_DRAFTS, Draft, capabilities, parse_drafts


def test_capability_table() -> None:
    assert not capabilities(Draft.HIXIE75).binary and not Draft.HIXIE75.caps.close_handshake
    assert Draft.HIXIE76.caps.close_handshake and not Draft.HIXIE76.caps.close_codes
    assert not Draft.HIXIE76.caps.ping
    for draft in (Draft.HYBI07, Draft.HYBI08, Draft.RFC6455):
        caps = draft.caps
        assert caps.binary and caps.ping and caps.close_codes and caps.close_handshake


def test_parse_drafts() -> None:
    assert parse_drafts("75,76,7,8,13") == ALL_DRAFTS
    assert parse_drafts("all") == ALL_DRAFTS
    assert parse_drafts("13, hixie-76") == frozenset({Draft.RFC6455, Draft.HIXIE76})
    with pytest.raises(ValueError, match="unknown draft '9'"):
        parse_drafts("13,9")
    with pytest.raises(ValueError, match="no draft"):
        parse_drafts(" , ")


def test_versions() -> None:
    assert [d.version for d in Draft] == [None, None, 7, 8, 13]
