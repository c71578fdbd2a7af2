"""Marks as W3C annotations and resources with their content (issue 7): what
is refused (typed, nothing written), body updates all or none, fencing by
attempt, content checked against its digest, and the W3C export."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from pathlib import Path
from typing import Any

import msgspec
import pytest

import jobledger
import jobledger.annotations
import jobledger.core
from jobledger import (
    Agent,
    Annotation,
    BodyAdd,
    BodyRemove,
    BodyReplace,
    SpecificResource,
    Target,
    TextPositionSelector,
    TextQuoteSelector,
    TextualBody,
)
from jobledger.store import ContentFolder, content_folder_for

from .conftest import eventually, note

TEXT = "Grace Hopper wrote the first compiler. It turned words into code."
COMMENT = TextualBody(value="A pioneer.", purpose="commenting")
LATER = jobledger.RetryPolicy(base_delay=3600.0, jitter=False)
LINK = SpecificResource(source="https://example.org/hopper", purpose="linking")


def on(start: int, end: int, **kw: Any) -> Annotation:
    return Annotation.on_text("doc", TEXT, start, end, motivation="commenting", **kw)


async def test_a_mark_is_a_w3c_annotation_document(db_path: Path) -> None:
    creator = Agent.person(jobledger.User(id="gh", name="Grace", email="g@navy.example"))
    async with jobledger.open(db_path) as ledger:
        mark = await ledger.create_mark("doc", on(0, 12, body=[COMMENT], creator=creator))
        assert (mark.exact, mark.motivation, mark.created_by) == (
            "Grace Hopper",
            "commenting",
            "system",
        )
        [document] = await ledger.annotations("doc", base_iri="https://kb.example/")
        assert document == {
            "@context": "http://www.w3.org/ns/anno.jsonld",
            "id": f"https://kb.example/marks/{mark.id}",
            "type": "Annotation",
            "motivation": "commenting",
            "target": {
                "source": "https://kb.example/resources/doc",
                "selector": [
                    {"type": "TextPositionSelector", "start": 0, "end": 12},
                    {
                        "type": "TextQuoteSelector",
                        "exact": "Grace Hopper",
                        "suffix": " wrote the first compiler. It tu",
                    },
                ],
            },
            "body": [{"type": "TextualBody", "value": "A pioneer.", "purpose": "commenting"}],
            "creator": {
                "id": "urn:jobledger:user:gh",
                "type": "Person",
                "name": "Grace",
                "email": "mailto:g@navy.example",
            },
            "created": mark.created_at.isoformat().replace("+00:00", "Z"),
        }


@pytest.mark.parametrize(
    ("annotation", "field"),
    [
        (
            Annotation(motivation="commenting", target=Target(source="other")),
            "annotation.target.source",
        ),
        (
            Annotation(
                motivation="commenting",
                target=Target(source="doc", selector=[TextPositionSelector(start=5, end=5)]),
            ),
            "annotation.target.selector",
        ),
        (
            Annotation(
                motivation="commenting",
                target=Target(
                    source="doc",
                    selector=[
                        TextPositionSelector(start=0, end=5),
                        TextQuoteSelector(exact="Grace Hopper"),
                    ],
                ),
            ),
            "annotation.target.selector",
        ),
        (
            Annotation(
                motivation="commenting",
                target=Target(
                    source="doc",
                    selector=[
                        TextPositionSelector(start=0, end=5),
                        TextPositionSelector(start=1, end=2),
                    ],
                ),
            ),
            "annotation.target.selector",
        ),
        ({"motivation": "liking", "target": {"source": "doc"}}, "annotation.motivation"),
        ({"motivation": "commenting", "target": {"source": "doc"}, "extra": 1}, "annotation.extra"),
        (
            {"motivation": "tagging", "target": {"source": "doc"}, "body": [{"type": "Video"}]},
            "annotation.body[0].id",
        ),
    ],
)
async def test_a_malformed_annotation_is_refused_and_writes_nothing(
    db_path: Path, annotation: Any, field: str
) -> None:
    async with jobledger.open(db_path) as ledger:
        command = jobledger.core.MarkCreate(mark_id="m", resource_id="doc", annotation=annotation)
        with pytest.raises(jobledger.ValidationError) as refused:
            await ledger.send(command)
        assert refused.value.field == field
        assert await ledger.head() == 0
        await ledger.create_mark("doc", on(0, 5))  # and the next one is taken


def test_on_text_refuses_a_span_outside_the_text() -> None:
    for start, end in ((0, 0), (5, 2), (-1, 3), (0, len(TEXT) + 1)):
        with pytest.raises(jobledger.ValidationError):
            on(start, end)


async def test_body_operations_apply_in_order_all_or_none(db_path: Path) -> None:
    async with jobledger.open(db_path) as ledger:
        mark = await ledger.create_mark("doc", on(0, 12, body=[COMMENT]))
        mark = await ledger.update_mark_body(mark.id, [BodyAdd(item=LINK)])
        assert [b["type"] for b in mark.annotation["body"]] == ["TextualBody", "SpecificResource"]
        assert mark.version == 2
        head = await ledger.head()
        better = TextualBody(value="A rear admiral.", purpose="commenting")
        for operations, index in (
            ([BodyReplace(old_item=COMMENT, new_item=better), BodyAdd(item=LINK)], 1),
            ([BodyRemove(item=better)], 0),
            ([BodyAdd(item=COMMENT)], 0),
        ):
            with pytest.raises(jobledger.ValidationError) as refused:
                await ledger.update_mark_body(mark.id, operations)
            assert refused.value.field == f"operations[{index}]"
        assert await ledger.head() == head
        assert (await ledger.mark(mark.id)).annotation == mark.annotation
        mark = await ledger.update_mark_body(
            mark.id, [BodyReplace(old_item=COMMENT, new_item=better), BodyRemove(item=LINK)]
        )
        assert mark.annotation["body"] == [msgspec.to_builtins(better)]
        history = await ledger.replay()
        assert history.marks[mark.id] == mark
        with pytest.raises(jobledger.NotFound):
            await ledger.update_mark_body("missing", [BodyAdd(item=LINK)])
        await ledger.delete_mark(mark.id)
        with pytest.raises(jobledger.NotFound):
            await ledger.update_mark_body(mark.id, [BodyAdd(item=LINK)])


class Linker(jobledger.JobWorker):
    """Links a mark, then waits to be let go, then tries again."""

    job_types = ("link",)
    lease_seconds = 60.0

    def __init__(self) -> None:
        super().__init__()
        self.go = asyncio.Event()
        self.outcome: BaseException | None = None

    async def execute(self, job: jobledger.Job, ctx: jobledger.JobContext) -> dict[str, Any]:
        await ctx.update_mark_body(job.params["mark"], [BodyAdd(item=LINK)])
        await self.go.wait()
        try:
            await ctx.update_mark_body(job.params["mark"], [BodyRemove(item=LINK)])
            await ctx.create_resource("late.md", "too late")
        except jobledger.JobledgerError as exc:
            self.outcome = exc
            raise
        return {}


async def test_a_job_acts_on_marks_and_resources_only_for_its_current_attempt(
    db_path: Path,
) -> None:
    linker = Linker()
    async with jobledger.open(db_path, workers=[linker], poll_interval=0.01) as ledger:
        mark = await ledger.create_mark("doc", on(0, 12))
        job = await ledger.submit("link", {"mark": mark.id}, max_retries=1, retry=LATER)

        async def linked() -> bool:
            return (await ledger.mark(mark.id)).version == 2

        await eventually(linked)
        [update] = [e async for e in ledger.events(types=["mark.body_updated"])]
        assert (update.actor, update.data.job_id) == ("worker:Linker", job.id)  # type: ignore[attr-defined]
        # Attempt 1 ends behind the worker's back (as a lost lease would end it).
        await ledger.send(
            jobledger.core.JobFail(job_id=job.id, attempt=1, error="lost", retryable=True)
        )
        head = await ledger.head()
        linker.go.set()
        await eventually(lambda: linker.outcome is not None)
        assert isinstance(linker.outcome, jobledger.core.StaleAttempt | jobledger.InvalidTransition)
        after = [e.type async for e in ledger.events(after=head)]
        assert "mark.body_updated" not in after and "resource.created" not in after
        assert (await ledger.mark(mark.id)).annotation["body"] == [msgspec.to_builtins(LINK)]
        assert await ledger.resources() == []


async def test_a_resource_keeps_its_content_beside_the_database(db_path: Path) -> None:
    async with jobledger.open(db_path) as ledger:
        first = await ledger.create_resource("hopper.md", TEXT, resource_id="hopper")
        again = await ledger.create_resource("copy.md", TEXT.encode(), media_type="text/plain")
        assert first.digest == again.digest == jobledger.core.digest_of(TEXT.encode())
        assert (first.size, first.media_type, first.created_by) == (
            len(TEXT),
            "text/markdown",
            "system",
        )
        assert await ledger.content("hopper") == TEXT.encode()
        assert [r.id for r in await ledger.resources()] == ["hopper", again.id]
        with pytest.raises(jobledger.ValidationError) as used:
            await ledger.create_resource("other.md", "x", resource_id="hopper")
        assert used.value.field == "resource_id"
        with pytest.raises(jobledger.ValidationError):
            await ledger.create_resource("bad.md", "x", media_type="not a media type")
        with pytest.raises(jobledger.NotFound):
            await ledger.resource("missing")
        assert (await ledger.verify()).ok
    folder = ContentFolder(content_folder_for(db_path))
    stored = folder.path_of(first.digest)
    assert stored.read_bytes() == TEXT.encode()
    # The same bytes are stored once; a refused resource:create left its content
    # behind, unreferenced (content is stored before the command is decided).
    files = sorted(p.name for p in folder.root.rglob("*") if p.is_file())
    assert files == sorted([stored.name, folder.path_of(jobledger.core.digest_of(b"x")).name])
    stored.write_bytes(b"Grace Hopper wrote nothing.")
    async with jobledger.open(db_path) as ledger:
        with pytest.raises(jobledger.core.CorruptionError):
            await ledger.content("hopper")
        report = await ledger.verify()
        assert [(p.seq, p.kind) for p in report.problems] == [(1, "content"), (2, "content")]
        stored.unlink()
        with pytest.raises(jobledger.NotFound):
            await ledger.content("hopper")
        assert "is missing" in (await ledger.verify()).problems[0].detail


async def test_marks_and_resources_survive_a_restart_and_a_rebuild(db_path: Path) -> None:
    async with jobledger.open(db_path) as ledger:
        mark = await ledger.create_mark("doc", on(13, 18, body=[COMMENT]))
        await ledger.update_mark_body(mark.id, [BodyAdd(item=LINK)])
        await ledger.create_mark("doc", note("doc"))
        resource = await ledger.create_resource("r.md", "# R")
        before = (await ledger.marks("doc"), await ledger.resources())
    async with jobledger.open(db_path) as ledger:
        assert (await ledger.marks("doc"), await ledger.resources()) == before
        assert await ledger.rebuild() == 4
        assert (await ledger.marks("doc"), await ledger.resources()) == before
        replayed = await ledger.replay()
        assert sorted(replayed.marks.values(), key=lambda m: m.created_seq) == before[0]
        assert list(replayed.resources.values()) == [resource]


async def test_an_in_memory_ledger_keeps_content_in_memory() -> None:
    async with jobledger.open() as ledger:
        resource = await ledger.create_resource("m.md", "in memory")
        assert await ledger.content(resource.id) == b"in memory"
        assert (await ledger.verify()).ok


def test_a_mark_from_before_w3c_exports_as_a_describing_annotation() -> None:
    from datetime import UTC, datetime

    legacy = jobledger.Mark(
        id="m1",
        resource_id="doc",
        annotation={"highlight": "Ada"},
        created_by="worker:Old",
        created_at=datetime(2026, 1, 1, tzinfo=UTC),
        version=1,
        created_seq=4,
    )
    document = jobledger.to_jsonld(legacy)
    assert document["motivation"] == "describing"
    assert document["target"] == {"source": "urn:jobledger:resource:doc"}
    assert document["body"] == [
        {
            "type": "TextualBody",
            "value": '{"highlight":"Ada"}',
            "format": "application/json",
            "purpose": "describing",
        }
    ]
    assert (legacy.exact, legacy.motivation) == (None, None)


async def test_the_ledger_fetcher_reads_resources_then_falls_back(tmp_path: Path) -> None:
    folder = tmp_path / "documents"
    folder.mkdir()
    (folder / "notes.md").write_text("from the folder")
    fetcher = jobledger.annotations.LedgerFetcher(
        fallback=jobledger.annotations.FolderFetcher(folder)
    )
    async with jobledger.open(tmp_path / "f.db") as ledger:
        reading = asyncio.ensure_future(fetcher.fetch("notes"))
        await ledger.head()  # the loop runs the read meanwhile
        assert not reading.done()  # a read waits until the fetcher is bound
        fetcher.bind(ledger)
        assert await reading == "from the folder"
        stored = await ledger.create_resource("r.md", "from the ledger")
        binary = await ledger.create_resource("b.bin", b"\xff\xfe", media_type="application/x-b")
        assert await fetcher.fetch(stored.id) == "from the ledger"
        with pytest.raises(jobledger.ValidationError):
            await fetcher.fetch(binary.id)
        with pytest.raises(jobledger.NotFound):
            await fetcher.fetch("nowhere")
        alone = jobledger.annotations.LedgerFetcher()
        alone.bind(ledger)
        with pytest.raises(jobledger.NotFound):
            await alone.fetch("notes")  # no fallback: only the ledger's resources


async def test_an_edited_body_update_is_reported_by_verify_not_raised(db_path: Path) -> None:
    async with jobledger.open(db_path) as ledger:
        mark = await ledger.create_mark("doc", on(0, 12))
        await ledger.update_mark_body(mark.id, [BodyAdd(item=LINK)])
    with contextlib.closing(sqlite3.connect(db_path)) as conn, conn:
        conn.execute(
            "UPDATE events SET data = CAST(replace(CAST(data AS TEXT), '\"add\"', '\"remove\"')"
            " AS BLOB) WHERE seq = 2"
        )
    async with jobledger.open(db_path) as ledger:
        report = await ledger.verify()
        assert [(p.seq, p.kind) for p in report.problems][:2] == [(2, "hash"), (2, "fold")]
        assert "does not apply to mark" in report.problems[1].detail
        with pytest.raises(jobledger.core.CorruptionError):
            await ledger.replay()


def test_a_free_form_body_cannot_be_updated() -> None:
    from datetime import UTC, datetime

    model = jobledger.core.Projection()
    for body in (None, 5, "abc", {"k": 1}):
        model.marks["m"] = jobledger.Mark(
            id="m",
            resource_id="doc",
            annotation={"body": body},
            created_by="x",
            created_at=datetime(2026, 1, 1, tzinfo=UTC),
            version=1,
            created_seq=1,
        )
        command = jobledger.core.MarkUpdateBody(mark_id="m", operations=[BodyAdd(item=LINK)])
        with pytest.raises(jobledger.ValidationError) as refused:
            jobledger.core.decide(command, model, datetime(2026, 1, 2, tzinfo=UTC))
        assert refused.value.field == "body"


async def test_a_refused_resource_is_refused_before_its_content_is_stored(db_path: Path) -> None:
    async with jobledger.open(db_path) as ledger:
        for content, field in (("\ud800", "content"), (123, "content")):
            with pytest.raises(jobledger.ValidationError) as refused:
                await ledger.create_resource("n.md", content)  # type: ignore[arg-type]
            assert refused.value.field == field
        for name, media_type in (("", "text/plain"), ("n.md", "no media type")):
            with pytest.raises(jobledger.ValidationError):
                await ledger.create_resource(name, "never stored", media_type=media_type)
        assert await ledger.head() == 0
    assert not content_folder_for(db_path).exists()


async def test_storing_content_again_repairs_a_damaged_file(tmp_path: Path) -> None:
    folder = ContentFolder(tmp_path / "content")
    digest = await folder.put(b"the bytes")
    folder.path_of(digest).write_bytes(b"the bytez")
    with pytest.raises(jobledger.core.CorruptionError):
        await folder.get(digest)
    assert await folder.put(b"the bytes") == digest
    assert await folder.get(digest) == b"the bytes"
    assert folder.digests() == [digest]
