"""Audit: the log as evidence (the state as of a past point, the check of the
hash chain and the read model, the digest to keep elsewhere, the rebuild of
the read model, and export and import of the log with its hashes)."""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterable, Callable, Iterable
from datetime import datetime

from jobledger.core import ContentStore, Projection, ValidationError, get_logger
from jobledger.store import (
    Backend,
    Head,
    VerifyReport,
    export_log,
    import_log,
    rebuild,
    replay,
    verify,
)

from .arguments import _seq

__all__ = ["Audit"]

log = get_logger("ledger")


class Audit:
    """Audit of one log and its content store. Each method's contract is that
    of the :class:`jobledger.Ledger` method of its name."""

    def __init__(self, log: Backend, content: ContentStore, check_open: Callable[[], None]) -> None:
        self._log = log
        self._content = content
        self._check_open = check_open

    async def replay(
        self, *, until_seq: int | None = None, until: datetime | None = None
    ) -> Projection:
        self._check_open()
        if until is not None and (not isinstance(until, datetime) or until.tzinfo is None):
            raise ValidationError("must be an aware datetime", field="until")
        if until_seq is not None:
            until_seq = _seq(until_seq, "until_seq")
        return await replay(self._log, until_seq=until_seq, until=until)

    async def verify(self, *, digest: Head | str | None = None) -> VerifyReport:
        self._check_open()
        if isinstance(digest, str):
            digest = Head.parse(digest)
        elif digest is not None and not (
            isinstance(digest, Head)
            and isinstance(digest.hash, str)
            and _seq(digest.seq, "digest") >= 0
        ):
            raise ValidationError("must be a Head or its SEQ:HASH text", field="digest")
        return await verify(self._log, digest=digest, content=self._content)

    async def digest(self) -> Head:
        self._check_open()
        return await self._log.head()

    async def export_log(self, after: int = 0) -> AsyncGenerator[bytes, None]:
        self._check_open()
        after = _seq(after, "after")
        async for line in export_log(self._log, after):
            yield line

    async def import_log(self, lines: Iterable[bytes | str] | AsyncIterable[bytes | str]) -> int:
        self._check_open()
        count = await import_log(self._log, lines)
        log.info("log imported", events=count)
        return count

    async def rebuild(self) -> int:
        self._check_open()
        return await rebuild(self._log)
