"""The forwarding decisions (sans-I/O): CFU, CFB, CFNA, unavailable, DND, loop protection, feature codes."""

from __future__ import annotations

import pytest

from zvonok.telephony.forwarding import (
    FeatureCode,
    FeatureRequest,
    Forward,
    ForwardingChain,
    ForwardingSettings,
    Reason,
    Refuse,
    Ring,
    feature_changes,
    feature_code,
)

NONE = ForwardingSettings()


def test_without_settings_the_extension_rings_with_the_usual_timeout() -> None:
    chain = ForwardingChain.starting("101")
    assert chain.on_dialed("102", NONE) == Ring(None)
    for reason in (Reason.BUSY, Reason.NO_ANSWER, Reason.UNAVAILABLE):
        assert chain.after("102", NONE, reason) is None
    assert chain.hops == 0


def test_unconditional_forwards_before_ringing() -> None:
    chain = ForwardingChain.starting("101")
    assert chain.on_dialed("102", ForwardingSettings(unconditional="103")) == Forward("103", Reason.UNCONDITIONAL, "102")
    assert chain.hops == 1
    assert chain.visited == ["101", "102"]


def test_unconditional_to_an_outside_number() -> None:
    chain = ForwardingChain.starting(None)
    decision = chain.on_dialed("102", ForwardingSettings(unconditional="+74951234567"))
    assert decision == Forward("+74951234567", Reason.UNCONDITIONAL, "102")


def test_busy_no_answer_unavailable_each_go_to_their_own_target() -> None:
    settings = ForwardingSettings(busy="201", no_answer="202", no_answer_seconds=15, unavailable="203")
    chain = ForwardingChain.starting("101")
    assert chain.on_dialed("102", settings) == Ring(15.0)  # the CFNA timer replaces the usual one
    assert chain.after("102", settings, Reason.BUSY) == Forward("201", Reason.BUSY, "102")
    assert ForwardingChain.starting("101").after("102", settings, Reason.NO_ANSWER) == Forward(
        "202", Reason.NO_ANSWER, "102")
    assert ForwardingChain.starting("101").after("102", settings, Reason.UNAVAILABLE) == Forward(
        "203", Reason.UNAVAILABLE, "102")
    with pytest.raises(ValueError):
        chain.after("102", settings, Reason.UNCONDITIONAL)


def test_dnd_answers_busy_or_forwards_on_busy() -> None:
    assert ForwardingChain.starting("101").on_dialed("102", ForwardingSettings(dnd=True)) == Refuse(486, "busy")
    assert ForwardingChain.starting("101").on_dialed("102", ForwardingSettings(dnd=True, busy="103")) == Forward(
        "103", Reason.BUSY, "102")
    # CFU wins over DND
    assert ForwardingChain.starting("101").on_dialed(
        "102", ForwardingSettings(dnd=True, unconditional="104", busy="103")) == Forward("104", Reason.UNCONDITIONAL, "102")


def test_a_loop_back_to_an_extension_in_the_chain_is_not_followed() -> None:
    chain = ForwardingChain.starting("101")
    b = ForwardingSettings(unconditional="103")
    c = ForwardingSettings(unconditional="102")  # C forwards back to B
    assert isinstance(chain.on_dialed("102", b), Forward)
    assert chain.on_dialed("103", c) == Ring(None)  # C rings itself
    assert chain.hops == 1


def test_no_forward_back_to_the_caller() -> None:
    chain = ForwardingChain.starting("101")
    assert chain.on_dialed("102", ForwardingSettings(unconditional="101")) == Ring(None)
    assert chain.after("102", ForwardingSettings(busy="101"), Reason.BUSY) is None
    # a dialed number forwarding to itself is no forward either
    assert ForwardingChain.starting(None).on_dialed("102", ForwardingSettings(unconditional="102")) == Ring(None)


def test_dnd_with_a_looping_busy_target_answers_busy() -> None:
    chain = ForwardingChain.starting("101")
    assert chain.on_dialed("102", ForwardingSettings(dnd=True, busy="101")) == Refuse(486, "busy")


def test_at_most_max_hops_forwards() -> None:
    chain = ForwardingChain.starting("100", max_hops=3)
    number = "101"
    decisions = []
    for i in range(2, 8):
        decision = chain.on_dialed(number, ForwardingSettings(unconditional=f"1{i:02d}"))
        decisions.append(decision)
        if not isinstance(decision, Forward):
            break
        number = decision.target
    assert [type(d) for d in decisions] == [Forward, Forward, Forward, Ring]
    assert chain.hops == 3
    # the CFNA timer is not armed when its forward could not happen
    assert chain.on_dialed("199", ForwardingSettings(no_answer="198")) == Ring(None)


@pytest.mark.parametrize(("dialed", "expected"), [
    ("*72103", FeatureRequest(FeatureCode.CFU_ON, "103")),
    ("*7289161234567", FeatureRequest(FeatureCode.CFU_ON, "89161234567")),
    ("*73", FeatureRequest(FeatureCode.CFU_OFF)),
    ("*78", FeatureRequest(FeatureCode.DND_ON)),
    ("*79", FeatureRequest(FeatureCode.DND_OFF)),
    ("*72", None), ("*7399", None), ("*77", None), ("102", None), ("", None),
])
def test_feature_codes(dialed: str, expected: FeatureRequest | None) -> None:
    assert feature_code(dialed) == expected


def test_feature_code_changes() -> None:
    assert feature_changes(FeatureRequest(FeatureCode.CFU_ON, "103")) == {"unconditional": "103"}
    assert feature_changes(FeatureRequest(FeatureCode.CFU_OFF)) == {"unconditional": None}
    assert feature_changes(FeatureRequest(FeatureCode.DND_ON)) == {"dnd": True}
    assert feature_changes(FeatureRequest(FeatureCode.DND_OFF)) == {"dnd": False}


def test_stored_targets_read_as_typed_destinations() -> None:
    from zvonok.destination import Extension, External, Voicemail
    from zvonok.telephony.forwarding import forward_destination

    assert forward_destination("101") == Extension(number="101")
    assert forward_destination("+74951234567") == External(number="+74951234567")
    assert forward_destination("voicemail:101") == Voicemail(number="101")
    for unreadable in ("fax:101", "voicemail:", "+7abc", "", "sip:evil@example.com"):
        assert forward_destination(unreadable) is None, unreadable
