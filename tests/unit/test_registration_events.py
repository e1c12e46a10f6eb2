"""``RegistrationChanged``: the location service tells live views when an extension's devices come and
go (not on every refresh), and the tenant websocket streams it to admins only."""

from __future__ import annotations

from zvonok.api.auth import Principal
from zvonok.api.ws import STREAMED_TYPES, CallVisibility
from zvonok.bus import deserialize, serialize
from zvonok.org.models import Role
from zvonok.telephony.events import RegistrationChanged
from zvonok.telephony.location import Binding, Location


def _binding(contact: str, expires_at: float = 1000.0) -> Binding:
    return Binding(tenant_id=7, extension_id=3, aor="sip:101@a.example", contact=contact, expires_at=expires_at)


def test_location_reports_contacts_that_appear_or_go() -> None:
    location = Location()
    changes: list[tuple[int, int]] = []
    location.on_change = lambda tenant_id, extension_id: changes.append((tenant_id, extension_id))
    location.put(_binding("sip:101@192.0.2.1"))
    assert changes == [(7, 3)]
    location.put(_binding("sip:101@192.0.2.1", expires_at=2000.0))  # a refresh: nothing new to show
    assert changes == [(7, 3)]
    location.put(_binding("sip:101@192.0.2.2"))
    location.remove(7, 3, "sip:101@192.0.2.1")
    location.remove(7, 3, "sip:101@192.0.2.9")  # not there: no change
    assert changes == [(7, 3)] * 3
    assert location.expire(now=1500.0) == 1  # the second contact expires
    assert changes == [(7, 3)] * 4
    location.restore([_binding("sip:101@192.0.2.3")])  # start-up: nobody is watching yet
    assert len(changes) == 4


def test_another_nodes_binding_is_reported_as_such() -> None:
    """Presence and live views follow every node's phones; what only the node a phone registered through
    does (its unsolicited message-waiting NOTIFY) can tell the copies apart."""
    location = Location()
    changes: list[tuple[int, bool]] = []
    location.on_change = lambda tenant_id, extension_id: changes.append((extension_id, location.applying_remote))
    location.put(_binding("sip:101@192.0.2.1"))
    location.apply_remote([_binding("sip:101@192.0.2.2")], [])
    location.apply_remote([], [(7, 3, "sip:101@192.0.2.2")])
    location.remove(7, 3, "sip:101@192.0.2.1")
    assert changes == [(3, False), (3, True), (3, True), (3, False)]
    assert not location.applying_remote


def test_the_websocket_streams_it_to_admins_only() -> None:
    event = RegistrationChanged(tenant_id=7, extension_id=3, devices=1, at=1.0)
    assert isinstance(event, STREAMED_TYPES)
    assert deserialize(serialize(event)) == event
    assert serialize(event)["type"] == "RegistrationChanged"
    admin = CallVisibility(Principal(role=Role.TENANT_ADMIN, tenant_id=7, account_id=1))
    employee = CallVisibility(Principal(role=Role.EMPLOYEE, tenant_id=7, employee_id=5, account_id=2))
    assert admin.admit(event) == [event]
    assert employee.admit(event) == []
