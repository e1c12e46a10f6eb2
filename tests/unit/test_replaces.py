"""The Replaces header (RFC 3891) as it arrives inside a REFER's Refer-To URI."""

from __future__ import annotations

import pytest

from zvonok.sip.errors import SipParseError
from zvonok.sip.headers import parse_name_addr
from zvonok.sip.replaces import Replaces, parse_replaces, replaces_of, uri_headers
from zvonok.sip.uri import SipUri


def refer_to(value: str) -> SipUri:
    uri = parse_name_addr(value).uri
    assert isinstance(uri, SipUri)
    return uri


def test_replaces_from_a_refer_to_uri_is_percent_decoded() -> None:
    # the form pjsua and RFC 5589 §7.1 put in Refer-To (the header's ';' and '=' escaped inside the URI)
    uri = refer_to("<sip:705@pbx.test?Replaces=a84b4c76e66710%40pc33.atlanta.com%3Bto-tag%3D314159"
                   "%3Bfrom-tag%3D1928301774&Require=replaces>")
    assert uri_headers(uri) == {"replaces": "a84b4c76e66710@pc33.atlanta.com;to-tag=314159;from-tag=1928301774",
                                "require": "replaces"}
    assert replaces_of(uri) == Replaces(call_id="a84b4c76e66710@pc33.atlanta.com", to_tag="314159",
                                        from_tag="1928301774")


def test_dialog_keys_match_either_side() -> None:
    r = parse_replaces("abc;from-tag=F;to-tag=T")
    assert r.dialog_keys() == (("abc", "T", "F"), ("abc", "F", "T"))


def test_early_only_and_unknown_parameters() -> None:
    r = parse_replaces("abc ; to-tag=T ; from-tag=F ; early-only ; x=y")
    assert (r.call_id, r.to_tag, r.from_tag, r.early_only) == ("abc", "T", "F", True)


def test_a_blind_refer_to_has_no_replaces() -> None:
    assert replaces_of(refer_to("<sip:705@pbx.test>")) is None


@pytest.mark.parametrize("value", ["", ";to-tag=a;from-tag=b", "abc;to-tag=a", "abc;from-tag=b", "abc;to-tag=;from-tag=b"])
def test_malformed_replaces_is_a_400(value: str) -> None:
    with pytest.raises(SipParseError) as info:
        parse_replaces(value)
    assert info.value.status == 400
