"""Pydantic schemas of the IVR menu API. Destinations are checked by the service (they need the tenant)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints, model_validator

from zvonok.sip.grammar import check_text

MenuName = Annotated[str, StringConstraints(strip_whitespace=True, max_length=100), AfterValidator(check_text)]
Key = Literal["0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "*", "#"]
Voice = Literal["ru", "en"]
PromptText = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=1000)]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class MenuCreate(_In):
    name: MenuName = ""
    prompt_text: PromptText | None = Field(default=None, description="Spoken by espeak-ng when saved (unless a "
                                                                      "file is uploaded)")
    voice: Voice = "ru"
    keys: dict[Key, dict[str, Any]] = Field(default_factory=dict, description='e.g. {"1": {"kind": "extension", '
                                                                              '"number": "101"}}')
    direct_dial: bool = Field(default=False, description="The caller may key an extension's number")
    timeout: int = Field(default=5, ge=1, le=60, description="Seconds for the first key after the greeting")
    digit_timeout: int = Field(default=3, ge=1, le=10, description="Seconds between digits of a direct dial")
    retries: int = Field(default=2, ge=0, le=5, description="Greeting replays after a timeout or a wrong key")
    repeat_key: Key | None = None
    timeout_destination: dict[str, Any] | None = Field(default=None, description="After the last timeout "
                                                                                 "(default: hang up)")
    invalid_destination: dict[str, Any] | None = Field(default=None, description="After the last wrong key")

    @model_validator(mode="after")
    def _repeat_key(self) -> MenuCreate:
        if self.repeat_key is not None and self.repeat_key in self.keys:
            raise ValueError(f"repeat_key: {self.repeat_key} is also a menu key")
        return self


class MenuUpdate(_In):
    name: MenuName | None = None
    prompt_text: PromptText | None = None
    voice: Voice | None = None
    keys: dict[Key, dict[str, Any]] | None = None
    direct_dial: bool | None = None
    timeout: int | None = Field(default=None, ge=1, le=60)
    digit_timeout: int | None = Field(default=None, ge=1, le=10)
    retries: int | None = Field(default=None, ge=0, le=5)
    repeat_key: Key | None = None
    timeout_destination: dict[str, Any] | None = None
    invalid_destination: dict[str, Any] | None = None


class MenuOut(BaseModel):
    id: int
    tenant_id: int
    name: str
    prompt_text: str | None
    voice: str
    greeting: Literal["upload", "text", "none"]
    keys: dict[str, dict[str, Any]]
    direct_dial: bool
    timeout: int
    digit_timeout: int
    retries: int
    repeat_key: str | None
    timeout_destination: dict[str, Any] | None
    invalid_destination: dict[str, Any] | None


class GreetingOut(BaseModel):
    seconds: float
