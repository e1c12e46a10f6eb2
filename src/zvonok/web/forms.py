"""Small helpers for the console's forms: field errors (for ``templates/_form.html``) and form values.

Forms take strings (a browser sends nothing else) and build the domain's pydantic schema from them; a
schema error becomes one message per field, in the request's language, chosen by the page (the
schema's own messages are English and technical).
"""

from __future__ import annotations

from collections.abc import Mapping

from pydantic import ValidationError as PydanticValidationError

from zvonok.org.errors import OrgError


class BadId(ValueError):
    """A form's id field that is neither empty nor a number (a tampered form)."""


def optional_id(value: str) -> int | None:
    """``""`` -> None, ``"12"`` -> 12; :class:`BadId` for anything else."""
    value = value.strip()
    if not value:
        return None
    if not value.isdigit() or len(value) > 12:
        raise BadId(value)
    return int(value)


def schema_errors(exc: PydanticValidationError, messages: Mapping[str, str], fallback: str) -> dict[str, str]:
    """One message per field of a schema error: ``messages[field]`` (else ``fallback``)."""
    errors: dict[str, str] = {}
    for err in exc.errors():
        field = str(err["loc"][0]) if err["loc"] else ""
        errors.setdefault(field, messages.get(field, fallback))
    return errors


def org_error_field(exc: OrgError, default: str) -> str:
    """The form field an org service error is about (its ``field``, else ``default``)."""
    return exc.field or default
