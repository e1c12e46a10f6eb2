"""Dialing rules and calling permissions: the edge where what people dial becomes E.164.

Sans-I/O and database-free: the caller supplies the plan (per office), the tenant's extensions and the
policies of the levels; this package only decides. Typical use by the call engine::

    plan = russian_plan("495")
    dest = normalize("8 (812) 123-45-67", plan, extensions=tenant_extensions)   # +78121234567
    decision = check(dest, employee=emp_policy, office=office_policy, tenant=tenant_policy)
    if not decision.allowed: answer 403 and log decision.reason / decision.level

:mod:`.numbers` normalizes and classifies, :mod:`.plan` holds the country data, :mod:`.permissions`
decides, :mod:`.errors` has the typed errors.
"""

from __future__ import annotations

from .errors import DialingError, InvalidNumber, InvalidReason, PlanError, PolicyError
from .numbers import Destination, DestinationClass, normalize
from .permissions import (
    REQUIRED_CLASS,
    CallingPolicy,
    Decision,
    EffectivePolicy,
    Level,
    Reason,
    ServiceClass,
    check,
    resolve,
)
from .plan import DialPlan, e164_plan, russian_plan

__all__ = [
    "REQUIRED_CLASS",
    "CallingPolicy",
    "Decision",
    "Destination",
    "DestinationClass",
    "DialPlan",
    "DialingError",
    "EffectivePolicy",
    "InvalidNumber",
    "InvalidReason",
    "Level",
    "PlanError",
    "PolicyError",
    "Reason",
    "ServiceClass",
    "check",
    "e164_plan",
    "normalize",
    "resolve",
    "russian_plan",
]
