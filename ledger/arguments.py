"""Arguments: the checks every service of the face makes on what a caller
passes (users, ids, actors, seqs, counts, durations, statuses), each raising
a ``ValidationError`` naming the field and changing nothing."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta
from typing import TypeAlias

from jobledger.core import (
    MAX_ID_LENGTH,
    SYSTEM_USER,
    TERMINAL,
    Job,
    JobStatus,
    User,
    ValidationError,
)

__all__: list[str] = []

UserArg: TypeAlias = User | str | None


RESERVED_USER_IDS = ("system", "system:", "worker:")
"""User ids the engine keeps for itself: ``system`` and ``system:…`` (the
application and the engine's own actors) and ``worker:…``."""

_STATUS_NAMES = tuple(s.value for s in JobStatus)
_MAX_SEQ = 2**63 - 1  # the largest seq (and cursor) a log can hold


def _as_user(user: UserArg) -> User | None:
    """The caller: ``None`` (the application itself), or a user whose id is
    1-128 characters and not one the engine keeps for itself."""
    if user is None:
        return None
    if isinstance(user, str):
        user = User(id=user)
    if not isinstance(user, User) or not isinstance(user.id, str) or not user.id:
        raise ValidationError("must be a jobledger.User or a non-empty user id", field="user")
    if len(user.id) > MAX_ID_LENGTH:
        raise ValidationError(f"a user id is at most {MAX_ID_LENGTH} characters", field="user")
    _unicode(user.id, "user")
    if user.id == "system" or user.id.startswith(RESERVED_USER_IDS[1:]):
        raise ValidationError(
            f"{user.id!r} is kept for the engine (system, system:*, worker:*)", field="user"
        )
    if user.tenant is not None and (not isinstance(user.tenant, str) or not user.tenant):
        raise ValidationError("a tenant is a non-empty string", field="user.tenant")
    if user.tenant is not None:
        _unicode(user.tenant, "user.tenant")
    return user


def _actor(actor: object) -> str:
    """An application's ``actor`` argument: ``system`` (the application
    itself, the default) or any user id; never one of the engine's own
    actors (``system:*``, ``worker:*``), which the log keeps for the engine."""
    if actor == SYSTEM_USER.id:
        return SYSTEM_USER.id
    if not isinstance(actor, str):
        raise ValidationError("must be a user id or 'system'", field="actor")
    try:
        _as_user(actor)
    except ValidationError as exc:
        raise ValidationError(str(exc).removeprefix("user: "), field="actor") from exc
    return actor


def _id(value: object, field: str) -> str:
    """An id argument: a string of 1-128 characters (Unicode text)."""
    if not isinstance(value, str) or not 1 <= len(value) <= MAX_ID_LENGTH:
        raise ValidationError(f"must be a string of 1-{MAX_ID_LENGTH} characters", field=field)
    return _unicode(value, field)


def _optional_text(value: object, field: str) -> str | None:
    if value is not None and not isinstance(value, str):
        raise ValidationError("must be a string", field=field)
    return value if value is None else _unicode(value, field)


def _unicode(value: str, field: str) -> str:
    """Refuse lone surrogates: they are not text, and no file can store them."""
    try:
        value.encode()
    except UnicodeEncodeError:
        raise ValidationError("is not valid Unicode text (a lone surrogate)", field=field) from None
    return value


def _seq(value: object, field: str) -> int:
    """A position in the log: an int from 0 to 2**63 - 1."""
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= _MAX_SEQ:
        raise ValidationError("must be an int from 0 to 2**63 - 1", field=field)
    return value


def _count(value: object, field: str, most: int = 10_000) -> int:
    """A page size or batch: an int from 1 to ``most``."""
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= most:
        raise ValidationError(f"must be an int from 1 to {most}", field=field)
    return value


def _owns(job: Job, user: User | None) -> bool:
    return _owns_user(job.user, user)


def _owns_user(owner: User, user: User | None) -> bool:
    """True if ``user`` may see what ``owner`` owns (``None``: the application itself)."""
    if user is None:
        return True
    if owner.id != user.id:
        return False
    return user.tenant is None or owner.tenant == user.tenant


def _seconds(value: float | timedelta | None, field: str) -> float | None:
    if value is None:
        return None
    seconds = value.total_seconds() if isinstance(value, timedelta) else value
    if not isinstance(seconds, int | float) or isinstance(seconds, bool):
        raise ValidationError("must be seconds or a timedelta", field=field)
    try:
        return float(seconds)
    except OverflowError:  # an int past any float
        raise ValidationError("must be at most 30 days", field=field) from None


def _event_types(types: object) -> list[str] | None:
    """``events(types=…)``: None, or an iterable of event type names."""
    if types is None:
        return None
    if isinstance(types, str) or not isinstance(types, Iterable):
        raise ValidationError("must be an iterable of event types", field="types")
    names = list(types)
    if not all(isinstance(t, str) for t in names):
        raise ValidationError("must be an iterable of event types", field="types")
    return names


def _statuses(until: object, field: str = "until") -> frozenset[JobStatus] | None:
    """``wait(until=…)``: None, one status, or an iterable of statuses."""
    if until is None:
        return None
    items = [until] if isinstance(until, str) else until
    try:
        return frozenset(JobStatus(s) for s in items)  # type: ignore[attr-defined]
    except (TypeError, ValueError, RecursionError):  # (Enum's message reprs the value)
        statuses = ", ".join(s.value for s in JobStatus)
        raise ValidationError(f"must be statuses ({statuses})", field=field) from None


def _endings(statuses: object) -> list[JobStatus]:
    """``cleanup(statuses=…)``: job endings (``TERMINAL``), in their order."""
    found = _statuses(statuses, "statuses") or frozenset()
    if not found <= TERMINAL:
        endings = ", ".join(s.value for s in JobStatus if s in TERMINAL)
        raise ValidationError(f"must be job endings ({endings})", field="statuses")
    return sorted(found)
