"""Pydantic schemas of the CRM API. Phones arrive as people write them and are normalized to E.164 by the
service (it knows the owner's office and so the local dialing rules); custom field values are checked by
the service against the tenant's definitions (their kinds are data, not types)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

from zvonok.org.schemas import Email, Name
from zvonok.sip.grammar import check_text

Kind = Literal["person", "company"]
FieldKind = Literal["text", "number", "date", "choice"]
Tag = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=40), AfterValidator(check_text)]
PhoneText = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=40)]
Label = Annotated[str, StringConstraints(strip_whitespace=True, max_length=40), AfterValidator(check_text)]
NoteText = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=10_000)]
FieldKey = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,39}$")]
Id = Annotated[int, Field(ge=1, le=2**31 - 1)]  # INTEGER columns (zvonok.api.deps.MAX_ID)
MAX_PHONES = 20
MAX_EMAILS = 20
MAX_TAGS = 30


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PhoneIn(_In):
    number: PhoneText = Field(description="As written (+7 495 123-45-67, 8 495 ..., 123-45-67 with the owner's "
                                          "office area code); stored in E.164")
    label: Label = ""


class ClientCreate(_In):
    kind: Kind = "person"
    name: Name
    company_id: Id | None = Field(default=None, description="A person's company (a client of kind company)")
    owner_id: Id | None = Field(default=None, description="The employee in charge of the client")
    phones: list[PhoneIn] = Field(default_factory=list, max_length=MAX_PHONES)
    emails: list[Email] = Field(default_factory=list, max_length=MAX_EMAILS)
    tags: list[Tag] = Field(default_factory=list, max_length=MAX_TAGS)
    fields: dict[str, Any] = Field(default_factory=dict, description="Custom fields by key (see /crm/fields)")
    note: NoteText | None = Field(default=None, description="A first note")


class ClientUpdate(_In):
    """Partial: lists given replace the client's (phones, emails, tags); ``fields`` are merged (null removes)."""

    name: Name | None = None
    company_id: Id | None = None
    owner_id: Id | None = None
    phones: list[PhoneIn] | None = Field(default=None, max_length=MAX_PHONES)
    emails: list[Email] | None = Field(default=None, max_length=MAX_EMAILS)
    tags: list[Tag] | None = Field(default=None, max_length=MAX_TAGS)
    fields: dict[str, Any] | None = None


class PhoneOut(BaseModel):
    number: str
    label: str


class NoteIn(_In):
    text: NoteText


class NoteOut(BaseModel):
    id: int
    text: str
    author_employee_id: int | None
    created_at: datetime


class ClientOut(BaseModel):
    id: int
    tenant_id: int
    kind: str
    name: str
    company_id: int | None
    company_name: str | None = None
    owner_id: int | None
    owner_name: str | None = None
    phones: list[PhoneOut]
    emails: list[str]
    tags: list[str]
    fields: dict[str, Any]
    created_at: datetime
    updated_at: datetime


class MergeIn(_In):
    source_id: Id = Field(description="The client merged into this one (and then gone): its phones, e-mails, "
                                       "notes, tags, missing fields and people move here")


class FieldCreate(_In):
    key: FieldKey
    label: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100),
                     AfterValidator(check_text)]
    kind: FieldKind
    choices: list[Label] = Field(default_factory=list, max_length=100, description="kind choice: the values")
    required: bool = False
    position: int = Field(default=0, ge=0, le=1000)


class FieldOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    key: str
    label: str
    kind: str
    choices: list[str]
    required: bool
    position: int


class CallOut(BaseModel):
    """One call of a client's timeline; ``detail`` and ``recording`` are the console's (and the viewer's)."""

    id: int
    call_id: str
    started_at: datetime
    direction: str
    disposition: str
    duration: int
    billsec: int
    caller_number: str
    caller_name: str
    callee_number: str
    callee_name: str
    employee_name: str | None
    client_number: str = Field(description="The client's number in this call")
    has_recording: bool
    detail_url: str | None = Field(description="The console's page of the call, for a viewer who may open it")
    recording_url: str | None


