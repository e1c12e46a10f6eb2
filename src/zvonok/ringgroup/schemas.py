"""Pydantic schemas of the ring-group API. Members are extension numbers (2-8 digits) or outside numbers in
international form (stored in E.164); the no-answer destination is a DID destination branch
(:data:`zvonok.destination.Destination`, one of ``BRANCH_KINDS``); whether the extensions and groups exist is the service's
check (it needs the tenant)."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

from zvonok.org.schemas import ExtensionNumber
from zvonok.pstn.destinations import to_e164
from zvonok.sip.grammar import check_text

GroupName = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100),
                      AfterValidator(check_text)]
StrategyName = Literal["simultaneous", "hunt", "round_robin"]
MAX_MEMBERS = 30
_EXTENSION = re.compile(r"^[0-9]{2,8}$")


def clean_members(members: list[str]) -> list[str]:
    """Extension numbers as they are, outside numbers in E.164; ValueError naming the member otherwise."""
    out: list[str] = []
    for i, raw in enumerate(members):
        text = raw.strip()
        if _EXTENSION.match(text):
            out.append(text)
            continue
        try:
            out.append(to_e164(text))
        except ValueError as exc:
            raise ValueError(f"members[{i}]: an extension number (2-8 digits) or an outside number: {exc}") from None
    seen: set[str] = set()
    for i, member in enumerate(out):
        if member in seen:
            raise ValueError(f"members[{i}]: {member} is listed twice")
        seen.add(member)
    return out


Members = Annotated[list[Annotated[str, StringConstraints(max_length=40)]],
                    Field(min_length=1, max_length=MAX_MEMBERS,
                          description="In order: extension numbers, or outside numbers ('+' and the country code)"),
                    AfterValidator(clean_members)]
RingSeconds = Annotated[int, Field(ge=5, le=300, description="How long each member rings (all of them at "
                                                             "once for simultaneous)")]
MaxSeconds = Annotated[int, Field(ge=5, le=3600, description="The overall limit; null: every member once")]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RingGroupCreate(_In):
    number: ExtensionNumber = Field(description="Dialed like an extension (2-8 digits), unique among the "
                                                "tenant's extensions, conference rooms and groups")
    name: GroupName
    strategy: StrategyName = "simultaneous"
    members: Members
    ring_seconds: RingSeconds = 20
    max_seconds: MaxSeconds | None = None
    no_answer: dict[str, Any] | None = Field(
        default=None, description='Where the call goes when nobody answers, e.g. {"kind": "extension", "number": '
                                  '"101"} (extension, voicemail, external, conference, ring_group); null: hang up')


class RingGroupUpdate(_In):
    number: ExtensionNumber | None = None
    name: GroupName | None = None
    strategy: StrategyName | None = None
    members: Members | None = None
    ring_seconds: RingSeconds | None = None
    max_seconds: MaxSeconds | None = None
    no_answer: dict[str, Any] | None = None


class RingGroupOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    tenant_id: int
    number: str
    name: str
    strategy: str
    members: list[str]
    ring_seconds: int
    max_seconds: int | None
    no_answer: dict[str, Any] | None
    last_answered: str | None = Field(description="Round robin: the member who answered the last call")
