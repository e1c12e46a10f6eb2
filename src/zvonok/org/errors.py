"""Typed business errors. The HTTP layer maps them to status codes; the CLI prints their message.

Each carries the field it is about (when there is one) so the caller can say *what* was wrong.
"""

from __future__ import annotations


class OrgError(Exception):
    """Base of org-domain errors; ``status`` is the HTTP status the API answers with."""

    status = 400

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class NotFound(OrgError):
    status = 404


class Conflict(OrgError):
    """A uniqueness rule or a state rule forbids the change (duplicate number, domain in use...)."""

    status = 409


class InUse(Conflict):
    """The object cannot be deleted because something else still references it."""


class ValidationError(OrgError):
    """Input is well-formed but breaks a business rule (unknown time zone, office of another tenant...)."""

    status = 422


class PermissionDenied(OrgError):
    status = 403


class AuthError(OrgError):
    """Login or token rejected; deliberately vague so it reveals nothing."""

    status = 401
