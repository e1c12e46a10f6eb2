"""dialog-info+xml (RFC 4235) and PIDF (RFC 3863/4480) bodies: the RFC examples' shapes parse, what we
build parses back to the same thing, and a state outside RFC 4235 or a non-XML body is a parse error."""

from __future__ import annotations

from pathlib import Path

import pytest

from zvonok.sip.dialog_info import (
    Dialog,
    DialogInfo,
    DialogState,
    Presence,
    build_dialog_info,
    build_pidf,
    parse_dialog_info,
    parse_pidf,
)
from zvonok.sip.errors import SipParseError

DATA = Path(__file__).resolve().parents[1] / "data" / "blf"


def test_rfc4235_examples_parse() -> None:
    basic = parse_dialog_info((DATA / "rfc4235-basic.xml").read_bytes())
    assert (basic.entity, basic.version, basic.full) == ("sip:alice@example.com", 0, True)
    (d,) = basic.dialogs
    assert (d.id, d.call_id, d.local_tag, d.direction, d.state) == (
        "as7d900as8",
        "a84b4c76e66710",
        "1928301774",
        "initiator",
        DialogState.TRYING,
    )
    partial = parse_dialog_info((DATA / "rfc4235-emergency.xml").read_bytes())
    assert partial.full is False and partial.version == 1
    replaced, incoming = partial.dialogs
    assert (replaced.state, replaced.event, replaced.remote_tag) == (
        DialogState.TERMINATED,
        "replaced",
        "456887766",
    )
    assert (replaced.local_identity, replaced.local_display, replaced.local_target) == (
        "sip:alice@example.com",
        "Alice",
        "sip:alice@pc33.example.com",
    )
    assert (replaced.remote_identity, replaced.remote_display, replaced.remote_target) == (
        "sip:bob@example.org",
        "Bob",
        "sip:bobster@phone21.example.org",
    )
    assert (incoming.direction, incoming.state, incoming.remote_display) == (
        "recipient",
        DialogState.CONFIRMED,
        "Carol",
    )


def test_rfc3863_and_rpid_examples_parse() -> None:
    basic = parse_pidf((DATA / "rfc3863-basic.xml").read_bytes())
    assert (basic.entity, basic.open, basic.on_the_phone, basic.contact, basic.tuple_id) == (
        "pres:someone@example.com",
        True,
        False,
        "tel:+09012345678",
        "sg89ae",
    )
    busy = parse_pidf((DATA / "rpid-on-the-phone.xml").read_bytes())
    assert (busy.open, busy.on_the_phone, busy.note) == (True, True, "Busy")


@pytest.mark.parametrize(
    "info",
    [
        DialogInfo(entity="sip:102@acme.test", version=0),
        DialogInfo(
            entity="sip:102@acme.test",
            version=7,
            dialogs=(
                Dialog(
                    id="leg1",
                    state=DialogState.EARLY,
                    direction="recipient",
                    local_identity="sip:102@acme.test",
                    local_target="sip:102@acme.test",
                    remote_identity="sip:101@acme.test",
                    remote_display='A & "B" <c>',
                    remote_target="sip:**102@acme.test",
                ),
                Dialog(
                    id="leg2",
                    state=DialogState.TERMINATED,
                    direction="initiator",
                    event="rejected",
                    call_id="c@h",
                    local_tag="1",
                    remote_tag="2",
                ),
            ),
        ),
    ],
)
def test_dialog_info_round_trip(info: DialogInfo) -> None:
    assert parse_dialog_info(build_dialog_info(info)) == info


@pytest.mark.parametrize(
    "presence",
    [
        Presence(entity="sip:102@acme.test", open=True, on_the_phone=True, note="On the phone"),
        Presence(entity="sip:102@acme.test", open=False, note="Offline <&>", contact="sip:102@acme.test"),
    ],
)
def test_pidf_round_trip(presence: Presence) -> None:
    assert parse_pidf(build_pidf(presence)) == presence


@pytest.mark.parametrize("body", [(DATA / "bad-state.xml").read_bytes(), b"<not xml", b"<presence/>"])
def test_bad_bodies(body: bytes) -> None:
    with pytest.raises(SipParseError):
        parse_dialog_info(body)
