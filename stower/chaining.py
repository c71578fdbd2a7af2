"""Chaining: how the Stower makes a command's events into log records (the
next ``seq``, the stream's next version, an event id, the hash chained from
the one before) and folds each into the batch's state. A mixin of
:class:`~jobledger.stower.Stower`.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

import msgspec

from jobledger.core import (
    AnyEvent,
    Command,
    Envelope,
    IdFactory,
    chain_hash,
    encode_event,
    evolve_asset,
    evolve_job,
    evolve_mark,
    evolve_queue,
    evolve_resource,
    key_of,
    track_running,
)
from jobledger.store import Record

from .batch import _BatchState

__all__: list[str] = []


class _Chaining:
    """The Stower provides the attribute declared here for the type checker."""

    if TYPE_CHECKING:
        _ids: IdFactory

    def _chain(
        self,
        events: Sequence[AnyEvent],
        command: Command,
        seq: int,
        previous: str,
        now: datetime,
        ms: int,
        state: _BatchState,
    ) -> tuple[int, str, list[Record]]:
        """The records of one command's events, each the next ``seq`` after
        ``seq``, hashed on from ``previous`` and folded into ``state``;
        returns the ``seq`` and hash reached, and the records."""
        made: list[Record] = []
        for event in events:
            seq += 1
            record = self._record(event, command, seq, previous, now, ms, state)
            previous = record.envelope.hash
            self._evolve(record.envelope, state)
            made.append(record)
        return seq, previous, made

    def _record(
        self,
        event: AnyEvent,
        command: Command,
        seq: int,
        previous: str,
        now: Any,
        ms: int,
        state: _BatchState,
    ) -> Record:
        stream = event.stream
        version = state.version(stream) + 1
        event_id = self._ids.make("evt", ms)
        data = encode_event(event)
        tag = event.__struct_config__.tag
        assert isinstance(tag, str)
        unsigned = Envelope(
            seq=seq,
            event_id=event_id,
            stream=stream,
            version=version,
            type=tag,
            time=now,
            actor=command.actor,
            correlation_id=command.correlation_id,
            causation_id=command.causation_id,
            data=event,
            hash="",
        )
        envelope = msgspec.structs.replace(unsigned, hash=chain_hash(previous, unsigned, data))
        return Record(envelope, data)

    @staticmethod
    def _evolve(env: Envelope, state: _BatchState) -> None:
        key = env.stream
        kind = env.type.split(".", 1)[0]
        if kind == "job":
            before = state.jobs.get(key)
            after = evolve_job(before, env)
            state.jobs[key] = after
            if before is None and after is not None and after.idempotency_key is not None:
                state.keys[key_of(after)] = after.id
            if state.queues:
                moved = track_running(state.queues, before, after)
                if moved is not None:
                    state.dirty_queues.add(moved)
        elif kind == "queue":
            name = env.data.queue  # type: ignore[union-attr]
            # (load() gave an unsaved record, counting, for each queue configured)
            state.queues[name] = evolve_queue(state.queues.get(name), env, running=0)
            state.dirty_queues.add(name)
            state.versions[key] = env.version
            return
        elif kind == "mark":
            state.marks[key] = evolve_mark(state.marks.get(key), env)
        else:
            made = evolve_asset(None, env) if kind == "asset" else evolve_resource(None, env)
            assert made is not None
            state.created[key] = made
        state.versions[key] = env.version
        state.dirty.add((kind, key))
