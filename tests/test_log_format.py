"""The stored format is pinned to the schema versions.

What a log holds (every event type with its version and fields, and the
read-model documents) may change only together with the schema versions of
both SQL backends: a newer jobledger then marks the logs it writes with a
newer schema, and an older one refuses to open them (``StorageError``:
"upgrade jobledger") instead of writing beside events or rows it does not
understand. Changing the format without a new schema version fails here;
the fix is a migration step on each backend and a new pin.
"""

from __future__ import annotations

import hashlib

import msgspec

from jobledger.core import Asset, Job, Mark, Queue, Resource
from jobledger.core.events import EVENT_TYPES, AnyEvent
from jobledger.store import postgres_schema, sqlite_schema

PINNED = {
    # (SQLite schema, PostgreSQL schema): the format's digest
    (3, 1): "34ed8c706eac08559f1f3f1859c681b0482729903e0220e0b8d51cacb74b9fd4",
    (4, 2): "dd9f00be3995fb195e54882a9fa9ab3a621c551b46603a9e2b51cf60e932d9a6",  # queues
    (5, 3): "3f1ed49e5026133a0ef7612cb75f1d99bf3f748010ebbd7e795f200de8f6c0a3",  # job.retried
}


def _format_digest() -> str:
    schema = msgspec.json.schema_components((AnyEvent, Job, Mark, Asset, Resource, Queue))
    versions = sorted((tag, cls.schema_version) for tag, cls in EVENT_TYPES.items())
    text = msgspec.json.encode([schema, versions], order="sorted")
    return hashlib.sha256(text).hexdigest()


def test_the_stored_format_changes_only_with_the_schema_versions() -> None:
    versions = (sqlite_schema.SCHEMA_VERSION, postgres_schema.SCHEMA_VERSION)
    assert versions in PINNED, f"new schema versions {versions}: pin the format beside them"
    assert _format_digest() == PINNED[versions], (
        "the stored format changed: add a migration step on both backends "
        "(store/sqlite_schema.py, store/postgres_schema.py) and pin the new digest"
    )
