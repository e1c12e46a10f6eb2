"""Pydantic schemas of the conference API. PINs are write-only: answers say ``has_pin``."""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints, model_validator

from zvonok.org.schemas import ExtensionNumber
from zvonok.sip.grammar import check_text

RoomName = Annotated[str, StringConstraints(strip_whitespace=True, max_length=100), AfterValidator(check_text)]
RoomPin = Annotated[str, StringConstraints(pattern=r"^[0-9]{4,8}$")]
MAX_MEMBERS = 500


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RoomCreate(_In):
    number: ExtensionNumber = Field(description="Dialed like an extension (2-8 digits), unique in the tenant")
    name: RoomName = ""
    pin: RoomPin | None = Field(default=None, description="Write-only: 4-8 digits asked of every caller")
    moderator_pin: RoomPin | None = Field(default=None, description="Write-only: joins as moderator")
    wait_for_moderator: bool = Field(default=False, description="Members hear and are heard only once a "
                                                                "moderator is in (needs a moderator PIN)")
    max_members: int = Field(default=50, ge=2, le=MAX_MEMBERS)

    @model_validator(mode="after")
    def _pins(self) -> RoomCreate:
        _check_pins(self.pin, self.moderator_pin, self.wait_for_moderator)
        return self


class RoomUpdate(_In):
    number: ExtensionNumber | None = None
    name: RoomName | None = None
    pin: RoomPin | None = Field(default=None, description="Write-only; null removes the PIN")
    moderator_pin: RoomPin | None = Field(default=None, description="Write-only; null removes it")
    wait_for_moderator: bool | None = None
    max_members: int | None = Field(default=None, ge=2, le=MAX_MEMBERS)


def _check_pins(pin: str | None, moderator_pin: str | None, wait: bool) -> None:
    if pin is not None and pin == moderator_pin:
        raise ValueError("moderator_pin: must differ from pin")
    if wait and moderator_pin is None:
        raise ValueError("wait_for_moderator: needs a moderator_pin (nobody could start the conference)")


class RoomOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    tenant_id: int
    number: str
    name: str
    has_pin: bool
    has_moderator_pin: bool
    wait_for_moderator: bool
    max_members: int


class MemberOut(BaseModel):
    call_id: str
    number: str
    display_name: str
    moderator: bool
    muted: bool
    waiting: bool = Field(description="Waiting for a moderator: neither hears nor is heard")
    joined_at: float
