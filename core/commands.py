"""Commands: requests to change the log, named ``noun:verb``.

A command is a frozen, tagged msgspec Struct; its ``type`` tag is its wire
name (``job:create``). Commands are sent on the EventBus and decided by the
Stower, which validates each one against the field constraints below before
deciding it (constraints are enforced on decode, so the Stower round-trips a
command through JSON to check it; see :func:`validate_command`).

Every command carries ``actor`` (who asks: a user id or ``worker:NAME``) and
may carry ``correlation_id`` (the workflow it belongs to) and
``causation_id`` (the event or request that caused it). They are copied onto
every event the command produces.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime
from typing import Annotated, Any

import msgspec

from .annotations import BodyOperation
from .errors import ValidationError
from .holder import Holder
from .models import DEFAULT_MAX_RECOVERIES, RetryPolicy, User

__all__ = [
    "COMMAND_TYPES",
    "MAX_COMMAND_BYTES",
    "MAX_DEPTH",
    "MAX_ID_LENGTH",
    "MAX_QUEUE_CAPACITY",
    "MAX_RECOVERIES",
    "MAX_RETRIES",
    "MAX_RETRY_DELAY",
    "MAX_RETRY_FACTOR",
    "MAX_RUN_AT",
    "MAX_SECONDS",
    "MAX_TEXT_LENGTH",
    "MIN_RUN_AT",
    "AnyCommand",
    "AssetCreate",
    "Command",
    "JobCancel",
    "JobComplete",
    "JobCreate",
    "JobDelete",
    "JobExpire",
    "JobFail",
    "JobHeartbeat",
    "JobPartial",
    "JobProgress",
    "JobRelease",
    "JobResume",
    "JobRetry",
    "JobSkip",
    "JobStart",
    "JobSuspend",
    "MarkCreate",
    "MarkDelete",
    "MarkUpdateBody",
    "QueueConfigure",
    "ResourceCreate",
    "check_json",
    "field_error",
    "validate_command",
]

MAX_ID_LENGTH = 128
"""The longest id (job, mark, resource, asset, worker, actor, idempotency key)."""
MAX_TEXT_LENGTH = 4096
"""The longest free text (an error, a reason, a stage, a message)."""
MAX_SECONDS = 30 * 24 * 3600.0
"""The longest timeout or lease: 30 days, in seconds."""
MAX_RETRIES = 10_000
"""The most retries a job may have (``max_retries``)."""
MAX_RECOVERIES = 1000
"""The most recoveries from a lost worker a job may have (``max_recoveries``)."""
MAX_RETRY_DELAY = 24 * 3600.0
"""The longest wait before a retry (``RetryPolicy`` base and max delay): one day."""
MAX_RETRY_FACTOR = 100.0
"""The largest backoff factor of a ``RetryPolicy``."""
MIN_RUN_AT = datetime(1, 1, 2, tzinfo=UTC)
"""The earliest ``run_at``: any time zone's offset keeps it a valid date."""
MAX_QUEUE_CAPACITY = 1_000_000
"""The largest capacity a queue may have (jobs of it running at once)."""
MAX_RUN_AT = datetime(9999, 12, 30, tzinfo=UTC)
"""The latest ``run_at`` (9999-12-30 UTC): any time zone's offset keeps it a valid date."""

# No NUL: PostgreSQL's text columns refuse it, and one command refused at
# commit would fail every command of its batch.
Id = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_ID_LENGTH, pattern=r"^[^\x00]*$")]
JobTypeName = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")]
Text = Annotated[str, msgspec.Meta(max_length=MAX_TEXT_LENGTH)]
Percent = Annotated[float, msgspec.Meta(ge=0.0, le=100.0)]
Count = Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)]
Retries = Annotated[int, msgspec.Meta(ge=0, le=MAX_RETRIES)]
Recoveries = Annotated[int, msgspec.Meta(ge=0, le=MAX_RECOVERIES)]
Attempt = Annotated[int, msgspec.Meta(ge=1, le=2**63 - 1)]
Digest = Annotated[str, msgspec.Meta(pattern=r"^sha256:[0-9a-f]{64}$")]
MediaType = Annotated[
    str, msgspec.Meta(pattern=r"^[a-z0-9][a-z0-9.+-]{0,63}/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}$")
]
Version = Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)]
Priority = Annotated[int, msgspec.Meta(ge=-(2**31), le=2**31 - 1)]
Seconds = Annotated[float, msgspec.Meta(gt=0.0, le=MAX_SECONDS)]
QueueName = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$")]
Path = Annotated[str, msgspec.Meta(min_length=1, max_length=1024)]


class Command(
    msgspec.Struct, frozen=True, kw_only=True, tag_field="type", forbid_unknown_fields=True
):
    """Base of all commands."""

    actor: Id = "system"
    correlation_id: Id | None = None
    causation_id: Id | None = None


class JobCreate(Command, frozen=True, kw_only=True, tag="job:create"):
    """Submit a new job. ``job_id`` is chosen by the sender (a fresh id)."""

    job_id: Id
    job_type: JobTypeName
    params: dict[str, Any] = {}
    user: User
    priority: Priority = 0
    run_at: datetime | None = None
    max_retries: Retries = 0
    max_recoveries: Recoveries = DEFAULT_MAX_RECOVERIES
    timeout: Seconds | None = None
    idempotency_key: Id | None = None
    queue: QueueName = "default"
    suspendable: bool = False
    retry: RetryPolicy | None = None


class JobStart(Command, frozen=True, kw_only=True, tag="job:start"):
    """Claim a pending job. ``expected_version`` is the job's version the worker
    saw; ``holder`` names the claiming process (kept in the lease)."""

    job_id: Id
    worker: Id
    expected_version: Version
    lease_seconds: Seconds = 60.0
    holder: Holder | None = None


class JobProgress(Command, frozen=True, kw_only=True, tag="job:progress"):
    """Report progress of a running job's current ``attempt``."""

    job_id: Id
    attempt: Attempt
    percent: Percent | None = None
    stage: Text | None = None
    message: Text | None = None
    processed: Count | None = None
    total: Count | None = None
    checkpoint: dict[str, Any] | None = None


class JobHeartbeat(Command, frozen=True, kw_only=True, tag="job:heartbeat"):
    """Renew the lease of a running job's current ``attempt`` for ``lease_seconds``."""

    job_id: Id
    attempt: Attempt
    lease_seconds: Seconds = 60.0


class JobComplete(Command, frozen=True, kw_only=True, tag="job:complete"):
    """End a running job's ``attempt`` successfully with its ``result``."""

    job_id: Id
    attempt: Attempt
    result: dict[str, Any] | None = None


class JobFail(Command, frozen=True, kw_only=True, tag="job:fail"):
    """End a running job's ``attempt`` with an error."""

    job_id: Id
    attempt: Attempt
    error: Text
    error_type: Text | None = None
    retryable: bool = True
    timed_out: bool = False


class JobPartial(Command, frozen=True, kw_only=True, tag="job:partial"):
    """End a running job's ``attempt`` with part of the work done: a ``result``
    and an ``error`` saying what is missing."""

    job_id: Id
    attempt: Attempt
    result: dict[str, Any] | None = None
    error: Text


class JobSkip(Command, frozen=True, kw_only=True, tag="job:skip"):
    """End a running job's ``attempt``: the job does not apply, for ``reason``."""

    job_id: Id
    attempt: Attempt
    reason: Text


class JobCancel(Command, frozen=True, kw_only=True, tag="job:cancel"):
    """Cancel a job. Pending or suspended: at once. Running: the worker is asked
    to stop; it (or its runner) confirms by sending this again with its ``attempt``."""

    job_id: Id
    attempt: Attempt | None = None
    reason: Text | None = None


class JobSuspend(Command, frozen=True, kw_only=True, tag="job:suspend"):
    """Suspend a job of a suspendable type. Pending: at once. Running: the worker
    is asked to checkpoint and stop; it confirms by sending this with its ``attempt``."""

    job_id: Id
    attempt: Attempt | None = None


class JobResume(Command, frozen=True, kw_only=True, tag="job:resume"):
    """Put a suspended job back to pending, with its last progress."""

    job_id: Id


class JobRetry(Command, frozen=True, kw_only=True, tag="job:retry"):
    """Run a job that ended ``failed``, ``timed_out`` or ``cancelled`` again:
    pending once more, with the same id and its history, its attempt number
    going on, and its retry and recovery budgets afresh."""

    job_id: Id
    reason: Text | None = None


class JobDelete(Command, frozen=True, kw_only=True, tag="job:delete"):
    """Remove a job that is not running from the read model (a tombstone; its
    history stays in the log)."""

    job_id: Id


class JobExpire(Command, frozen=True, kw_only=True, tag="job:expire"):
    """Sent by the sweeper: the running ``attempt`` has outlived its lease
    (``reason="lease"``) or its timeout (``reason="timeout"``), or the process
    holding its lease is provably dead (``reason="holder"``, naming the
    ``holder`` found dead, which must be the lease's)."""

    job_id: Id
    attempt: Attempt
    reason: Annotated[str, msgspec.Meta(pattern="^(lease|timeout|holder)$")]
    holder: Holder | None = None


class JobRelease(Command, frozen=True, kw_only=True, tag="job:release"):
    """Sent by a worker that stops on purpose (shutdown, ``close()``) while
    running ``attempt``: the job goes back to pending at once, spending
    neither a retry nor a recovery."""

    job_id: Id
    attempt: Attempt
    reason: Text | None = None


class AssetCreate(Command, frozen=True, kw_only=True, tag="asset:create"):
    """Record a file made by a running job's ``attempt``. ``storage_path`` is
    relative to the asset root and may not leave it."""

    asset_id: Id
    job_id: Id
    attempt: Attempt
    asset_type: Id
    url: Annotated[str, msgspec.Meta(max_length=MAX_TEXT_LENGTH)] | None = None
    storage_path: Path
    size: Count


class MarkCreate(Command, frozen=True, kw_only=True, tag="mark:create"):
    """Create a mark on a resource: a W3C annotation document (its JSON form,
    or an :class:`Annotation` built in Python), checked against every MUST of
    the W3C model when decided and stored as given. If ``job_id`` is set,
    ``attempt`` must be its current one."""

    mark_id: Id
    resource_id: Id
    annotation: dict[str, Any]
    job_id: Id | None = None
    attempt: Attempt | None = None


class MarkDelete(Command, frozen=True, kw_only=True, tag="mark:delete"):
    """Delete a mark. If ``job_id`` is set, ``attempt`` must be its current one."""

    mark_id: Id
    job_id: Id | None = None
    attempt: Attempt | None = None


class MarkUpdateBody(Command, frozen=True, kw_only=True, tag="mark:update-body"):
    """Change a mark's body by ``operations`` (add, remove, replace), applied in
    order, all or none. If ``job_id`` is set, ``attempt`` must be its current one."""

    mark_id: Id
    operations: Annotated[list[BodyOperation], msgspec.Meta(min_length=1, max_length=256)]
    job_id: Id | None = None
    attempt: Attempt | None = None


class ResourceCreate(Command, frozen=True, kw_only=True, tag="resource:create"):
    """Record a document whose content is already stored under ``digest``
    (``sha256:`` and 64 hex digits). If ``job_id`` is set, a running job's
    ``attempt`` made it."""

    resource_id: Id
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=1024)]
    media_type: MediaType
    digest: Digest
    size: Count
    job_id: Id | None = None
    attempt: Attempt | None = None


class QueueConfigure(Command, frozen=True, kw_only=True, tag="queue:configure"):
    """Set a queue's capacity: at most ``capacity`` of its jobs run at once,
    in every process that shares the log (``None``: no limit). Jobs already
    running go on; a lower capacity only holds back new starts."""

    queue: QueueName
    capacity: Annotated[int, msgspec.Meta(ge=1, le=MAX_QUEUE_CAPACITY)] | None


AnyCommand = (
    JobCreate
    | JobStart
    | JobProgress
    | JobHeartbeat
    | JobComplete
    | JobFail
    | JobPartial
    | JobSkip
    | JobCancel
    | JobSuspend
    | JobResume
    | JobRetry
    | JobDelete
    | JobExpire
    | JobRelease
    | AssetCreate
    | MarkCreate
    | MarkDelete
    | MarkUpdateBody
    | ResourceCreate
    | QueueConfigure
)

COMMAND_TYPES: dict[str, type[Command]] = {
    cls.__struct_config__.tag: cls for cls in AnyCommand.__args__
}
"""Wire name → command class, for every command the Stower decides."""

MAX_COMMAND_BYTES = 1 << 20
"""The largest command, as JSON, the Stower accepts (1 MiB)."""

MAX_DEPTH = 32
"""The deepest nesting of a free-form value (params, result, checkpoint):
at most this many mappings and lists inside one another, the
value itself included."""

_FREE_FORM = ("params", "result", "checkpoint")
_SCALARS = (str, int, bool, type(None))

_encoder = msgspec.json.Encoder()
_decoder: msgspec.json.Decoder[AnyCommand] = msgspec.json.Decoder(AnyCommand)
_PATH = re.compile(r" - at `\$\.?([^`]*)`$")


def field_error(exc: msgspec.ValidationError, prefix: str | None = None) -> ValidationError:
    """Our ``ValidationError`` for a msgspec one, naming the field it points at
    (under ``prefix``, if given: ``params.text``)."""
    message = str(exc)
    match = _PATH.search(message)
    path = match.group(1) if match and match.group(1) else None
    field = ".".join(p for p in (prefix, path) if p) or None
    return ValidationError(_PATH.sub("", message), field=field)


def validate_command(command: object) -> Command:
    """Check ``command`` against every field constraint and return it.

    Structs built in Python skip msgspec's constraints, so the command is
    encoded and decoded once. Raises :class:`ValidationError` naming the field
    for anything that is not a well-formed command.
    """
    if not isinstance(command, Command):
        raise ValidationError(f"not a command: {type(command).__name__}")
    for name in _FREE_FORM:
        value = getattr(command, name, None)
        if value is not None:
            _check_json(value, name, 0)
    try:
        raw = _encoder.encode(command)
    except (TypeError, ValueError, OverflowError, RecursionError) as exc:
        raise ValidationError(f"cannot encode command: {exc}") from exc
    if len(raw) > MAX_COMMAND_BYTES:
        raise ValidationError(
            f"command is {len(raw)} bytes, more than the limit of {MAX_COMMAND_BYTES}"
        )
    try:
        checked = _decoder.decode(raw)
    except msgspec.ValidationError as exc:
        _check_finite(command, None, 0)  # a NaN that became null: say so first
        raise field_error(exc) from exc
    except msgspec.DecodeError as exc:  # e.g. NaN, nesting too deep
        raise ValidationError(f"malformed command: {exc}") from exc
    _check_kinds(command, checked, None, 0)
    if isinstance(checked, JobCreate):
        _check_create(checked)
    return checked


def _check_kinds(
    original: msgspec.Struct, decoded: msgspec.Struct, path: str | None, depth: int
) -> None:
    """Compare a command's typed fields as given with what JSON made of them:
    refuse NaN and infinities (JSON carries them as null: "no timeout", "no
    progress") and a value that only JSON made into text (a datetime, bytes,
    a UUID or a number given where text, an id or a name, is expected),
    naming the field. One walk, on the hot path: plain text is passed over
    first, and a path is made only for a refusal or a nested Struct."""
    if depth > 8:
        return
    given_values = msgspec.structs.astuple(original)
    kept_values = msgspec.structs.astuple(decoded)
    for name, given, kept in zip(decoded.__struct_fields__, given_values, kept_values, strict=True):
        kind = type(given)
        if kind is str or given is None or (depth == 0 and name in _FREE_FORM):
            continue
        if kind is float:
            if not math.isfinite(given):
                raise ValidationError(
                    "NaN and infinities are not numbers it can take", field=_at(path, name)
                )
            continue
        if type(kept) is str:  # given as something else: JSON made it text
            raise ValidationError(f"Expected `str`, got `{kind.__name__}`", field=_at(path, name))
        if isinstance(given, msgspec.Struct) and isinstance(kept, msgspec.Struct):
            _check_kinds(given, kept, _at(path, name), depth + 1)
        elif isinstance(given, list | tuple) and isinstance(kept, list):
            where = _at(path, name)
            for index, (one, other) in enumerate(zip(given[:256], kept[:256], strict=False)):
                if isinstance(one, msgspec.Struct) and isinstance(other, msgspec.Struct):
                    _check_kinds(one, other, f"{where}[{index}]", depth + 1)


def _at(path: str | None, name: str) -> str:
    return name if path is None else f"{path}.{name}"


def _check_create(command: JobCreate) -> None:
    """The limits of a submission that field constraints cannot say: a
    ``run_at`` that stays a valid date in UTC, a bounded retry policy, and
    an owner without NUL (stored in text columns, as ids are)."""
    for field, text in (("user.id", command.user.id), ("user.tenant", command.user.tenant)):
        if isinstance(text, str) and "\x00" in text:
            raise ValidationError("must not hold a NUL character", field=field)
    if command.run_at is not None:
        run_at = command.run_at
        if run_at.tzinfo is None:
            raise ValidationError("must be an aware datetime", field="run_at")
        try:
            in_range = MIN_RUN_AT <= run_at.astimezone(UTC) <= MAX_RUN_AT
        except (OverflowError, ValueError):
            in_range = False
        if not in_range:
            raise ValidationError(
                f"must be between {MIN_RUN_AT.date()} and {MAX_RUN_AT.date()} UTC", field="run_at"
            )
    policy = command.retry
    if policy is not None:
        limits = (
            ("base_delay", policy.base_delay, 0.0, MAX_RETRY_DELAY),
            ("max_delay", policy.max_delay, 0.0, MAX_RETRY_DELAY),
            ("factor", policy.factor, 1.0, MAX_RETRY_FACTOR),
        )
        for name, value, least, most in limits:
            if not least <= value <= most:
                raise ValidationError(
                    f"must be between {least:g} and {most:g}, not {value!r}", field=f"retry.{name}"
                )


def _check_finite(value: msgspec.Struct, path: str | None, depth: int) -> None:
    """Refuse NaN and infinities in a command's typed fields (JSON would
    carry them as null: "no timeout", "no progress"), naming the field.
    Free-form fields are checked by ``_check_json``; annotations go only a
    few Structs deep."""
    if depth > 8:
        return
    for name in value.__struct_fields__:
        if depth == 0 and name in _FREE_FORM:
            continue
        item = getattr(value, name, None)
        where = name if path is None else f"{path}.{name}"
        if isinstance(item, float) and not math.isfinite(item):
            raise ValidationError("NaN and infinities are not numbers it can take", field=where)
        if isinstance(item, msgspec.Struct):
            _check_finite(item, where, depth + 1)
        elif isinstance(item, list | tuple):
            for index, element in enumerate(item[:256]):
                if isinstance(element, msgspec.Struct):
                    _check_finite(element, f"{where}[{index}]", depth + 1)


def _check_json(value: Any, path: str, depth: int) -> None:
    """Refuse what JSON cannot carry unchanged: NaN and infinities (JSON has
    none; they would become null), bytes, sets and other non-JSON types,
    keys that are not strings, and nesting deeper than ``MAX_DEPTH``."""
    if isinstance(value, _SCALARS):
        return
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise ValidationError("NaN and infinities have no JSON form", field=path)
        return
    if depth >= MAX_DEPTH:
        raise ValidationError(f"nested deeper than {MAX_DEPTH} levels", field=path)
    if isinstance(value, msgspec.Struct):  # an object: its fields by name
        for key in value.__struct_fields__:
            _check_json(getattr(value, key, None), f"{path}.{key}", depth + 1)
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise ValidationError(f"key {key!r} is not a string", field=path)
            _check_json(item, f"{path}.{key}", depth + 1)
        return
    if isinstance(value, list | tuple):
        for index, item in enumerate(value):
            _check_json(item, f"{path}[{index}]", depth + 1)
        return
    raise ValidationError(f"{type(value).__name__} has no JSON form", field=path)


def check_json(value: Any, field: str) -> None:
    """Check that ``value`` is a JSON value that JSON carries unchanged
    (msgspec Structs count as objects): ``ValidationError`` naming the field
    for NaN and infinities, bytes, sets and other non-JSON types, keys that
    are not strings, and nesting deeper than ``MAX_DEPTH``."""
    _check_json(value, field, 0)
