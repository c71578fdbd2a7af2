"""The six annotation workers (issue 7), on the real ledger: against a fake
OpenAI-compatible server on loopback (real HTTP, recorded replies) and
against the offline client."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import msgspec
import pytest

import jobledger
import jobledger.annotations
import jobledger.core
from jobledger.annotations import (
    ANNOTATION_JOB_TYPES,
    TAG_SCHEMAS,
    FolderFetcher,
    InferenceClient,
    OfflineClient,
    OpenAIClient,
    annotation_workers,
    locate,
    parse_passages,
)

from .model_server import ModelServer, answer, malformed, truncated

TEXT = (
    "Ada Lovelace wrote the first published program in 1843. "
    "She worked with Charles Babbage on the Analytical Engine in London. "
    "The study shows that her notes describe loops and conditional branches. "
    "However, critics argue that Babbage wrote earlier programs. "
    "Because her notes were published, they should count as the first program.\n"
)
NO_WAIT = jobledger.RetryPolicy(base_delay=0.0, jitter=False)
ALICE = jobledger.User(id="alice", name="Alice", email="alice@kb.example", domain="kb.example")

STAGES = {
    "highlight-annotation": ["fetching", "analyzing", "creating"],
    "comment-annotation": ["fetching", "analyzing", "creating"],
    "assessment-annotation": ["fetching", "analyzing", "creating"],
    "reference-annotation": ["fetching", "analyzing", "creating"],
}
PARAMS: dict[str, dict[str, Any]] = {
    "highlight-annotation": {"resourceId": "ada", "density": 4},
    "comment-annotation": {"resourceId": "ada", "tone": "explanatory"},
    "assessment-annotation": {"resourceId": "ada", "tone": "balanced", "language": "en"},
    "tag-annotation": {"resourceId": "ada", "schemaId": "argument-toulmin"},
    "reference-annotation": {"resourceId": "ada", "entityTypes": ["Person", "Location"]},
}


@pytest.fixture
def documents(tmp_path: Path) -> Path:
    folder = tmp_path / "documents"
    folder.mkdir()
    (folder / "ada.md").write_text(TEXT)
    return folder


@asynccontextmanager
async def kb(
    db: Path, documents: Path, client: InferenceClient | None = None
) -> AsyncIterator[jobledger.Ledger]:
    workers = annotation_workers(FolderFetcher(documents), client)
    async with jobledger.open(
        db, workers=workers, job_types=ANNOTATION_JOB_TYPES, poll_interval=0.01
    ) as ledger:
        yield ledger


async def run(
    ledger: jobledger.Ledger, job_type: str, params: dict[str, Any], **kw: Any
) -> jobledger.Job:
    job = await ledger.submit(job_type, params, user=ALICE, **kw)
    return await ledger.wait(job.id, timeout=30)


async def commands_of(ledger: jobledger.Ledger, job_id: str) -> list[str]:
    """The event types a job caused, in log order (its own and its marks')."""
    return [
        e.type if e.type != "job.progressed" else f"progress:{e.data.stage}"  # type: ignore[attr-defined]
        async for e in ledger.events()
        if e.correlation_id == job_id
    ]


def check_w3c(document: dict[str, Any], text: str, resource_id: str) -> None:
    """A W3C annotation document whose selectors match ``text`` exactly."""
    assert document["@context"] == "http://www.w3.org/ns/anno.jsonld"
    assert document["type"] == "Annotation"
    assert document["id"].startswith("urn:jobledger:mark:")
    assert document["created"].endswith("Z")
    assert document["motivation"] in jobledger.core.MOTIVATIONS
    target = document["target"]
    assert target["source"] == f"urn:jobledger:resource:{resource_id}"
    selectors = {s["type"]: s for s in target["selector"]}
    position, quote = selectors["TextPositionSelector"], selectors["TextQuoteSelector"]
    assert text[position["start"] : position["end"]] == quote["exact"]
    assert text[: position["start"]].endswith(quote.get("prefix", ""))
    assert text[position["end"] :].startswith(quote.get("suffix", ""))
    assert document["creator"] == {
        "id": "https://kb.example/users/alice",
        "type": "Person",
        "name": "Alice",
        "email": "mailto:alice@kb.example",
    }
    assert document["generator"]["type"] == "Software"


# -- offline ---------------------------------------------------------------------


@pytest.mark.parametrize("job_type", sorted(PARAMS))
async def test_each_worker_marks_the_document_offline_in_one_order(
    db_path: Path, documents: Path, job_type: str
) -> None:
    async with kb(db_path, documents) as ledger:
        done = await run(ledger, job_type, PARAMS[job_type])
        assert done.status is jobledger.JobStatus.COMPLETED, done.error
        assert done.result is not None
        assert done.result["offline"] is True
        assert done.result["generator"] == "jobledger-offline"
        marks = await ledger.marks("ada")
        assert len(marks) == done.result["created"] == done.result["found"] > 0
        assert {m.job_id for m in marks} == {done.id}
        stages = STAGES.get(job_type) or (
            ["fetching"] + ["analyzing"] * 4 + ["creating"]  # one pass per Toulmin category
        )
        assert await commands_of(ledger, done.id) == [
            "job.created",
            "job.started",
            *(f"progress:{stage}" for stage in stages),
            *["mark.created"] * len(marks),
            "job.completed",
        ]
        for document in await ledger.annotations("ada"):
            check_w3c(document, TEXT, "ada")
            assert "jobledger-offline" in document["generator"]["name"]


async def test_offline_bodies_say_what_each_worker_found(db_path: Path, documents: Path) -> None:
    async with kb(db_path, documents) as ledger:
        for job_type in ("comment-annotation", "tag-annotation", "reference-annotation"):
            await run(ledger, job_type, PARAMS[job_type])
        by_motivation: dict[str, list[dict[str, Any]]] = {}
        for document in await ledger.annotations("ada"):
            by_motivation.setdefault(document["motivation"], []).append(document)
        for comment in by_motivation["commenting"]:
            [body] = comment["body"]
            assert body["purpose"] == "commenting" and body["value"]
        for tag in by_motivation["tagging"]:
            assert [b["purpose"] for b in tag["body"]] == ["tagging", "classifying"]
            assert tag["body"][1]["value"] == "argument-toulmin"
        people = {
            r["target"]["selector"][1]["exact"]
            for r in by_motivation["linking"]
            if r["body"][0]["value"] == "Person"
        }
        assert {"Ada Lovelace", "Charles Babbage"} <= people


async def test_params_are_checked_at_submit(db_path: Path, documents: Path) -> None:
    async with kb(db_path, documents) as ledger:
        with pytest.raises(jobledger.ValidationError) as refused:
            await ledger.submit("highlight-annotation", {"resourceId": "ada", "density": 0})
        assert refused.value.field == "params.density"
        with pytest.raises(jobledger.ValidationError):
            await ledger.submit("reference-annotation", {"resourceId": "ada", "entityTypes": []})
        assert await ledger.head() == 0


async def test_a_missing_document_or_an_unknown_schema_fails_with_the_reason(
    db_path: Path, documents: Path
) -> None:
    async with kb(db_path, documents) as ledger:
        missing = await run(ledger, "highlight-annotation", {"resourceId": "nope"})
        assert missing.status is jobledger.JobStatus.FAILED
        assert missing.error_type == "NotFound" and "nope" in (missing.error or "")
        assert missing.attempt == 1  # two retries allowed, none taken: asking again cannot help
        unknown = await run(ledger, "tag-annotation", {"resourceId": "ada", "schemaId": "x"})
        assert unknown.status is jobledger.JobStatus.FAILED
        assert "unknown tag schema 'x'" in (unknown.error or "")
        escape = await run(ledger, "highlight-annotation", {"resourceId": "..passwd"})
        assert escape.status is jobledger.JobStatus.FAILED
        assert escape.error_type == "ValidationError"
        assert await ledger.marks("ada") == []


# -- against a model server --------------------------------------------------------


def passages(*items: tuple[str, int, int] | tuple[str, int, int, str]) -> str:
    return json.dumps(
        [
            {"exact": i[0], "start": i[1], "end": i[2], **({"text": i[3]} if len(i) > 3 else {})}
            for i in items
        ]
    )


def span(exact: str) -> tuple[str, int, int]:
    start = TEXT.index(exact)
    return exact, start, start + len(exact)


@asynccontextmanager
async def model(server: ModelServer) -> AsyncIterator[OpenAIClient]:
    async with OpenAIClient(base_url=server.url, model="fake-model", max_retries=0) as client:
        yield client


async def test_a_model_reply_becomes_marks_with_offsets_checked_and_corrected(
    db_path: Path, documents: Path, model_server: ModelServer
) -> None:
    first = span("Ada Lovelace wrote the first published program in 1843.")
    wrong = ("Analytical Engine", 3, 20)  # right quote, wrong offsets: corrected
    reply = "```json\n" + passages(first, wrong) + "\n```"
    model_server.queue(answer(reply))
    async with model(model_server) as client, kb(db_path, documents, client) as ledger:
        done = await run(ledger, "highlight-annotation", {"resourceId": "ada", "density": 1})
        assert done.status is jobledger.JobStatus.COMPLETED
        assert done.result == {
            "resourceId": "ada",
            "found": 2,
            "created": 2,
            "corrected": 1,
            "unmatched": 0,
            "rejected": 0,
            "byLabel": {},
            "generator": "fake-model",
            "offline": False,
        }
        assert [m.exact for m in await ledger.marks("ada")] == [first[0], "Analytical Engine"]
        for document in await ledger.annotations("ada"):
            check_w3c(document, TEXT, "ada")
    [request] = model_server.requests
    assert request.body["model"] == "fake-model"
    assert request.body["max_tokens"] == 2048
    assert TEXT in request.prompt


async def test_a_reply_that_is_not_json_fails_the_job_and_marks_nothing(
    db_path: Path, documents: Path, model_server: ModelServer
) -> None:
    model_server.queue(answer("I found several interesting passages!"), malformed())
    async with model(model_server) as client, kb(db_path, documents, client) as ledger:
        prose = await run(ledger, "comment-annotation", {"resourceId": "ada"}, max_retries=0)
        assert prose.status is jobledger.JobStatus.FAILED
        assert prose.error_type == "InferenceError"
        assert "not a JSON list of passages" in (prose.error or "")
        broken = await run(ledger, "assessment-annotation", {"resourceId": "ada"})
        assert broken.status is jobledger.JobStatus.FAILED
        assert broken.error_type == "InferenceError"
        assert "is not valid JSON" in (broken.error or "")
        assert await ledger.marks("ada") == []


async def test_a_reply_that_is_not_json_is_asked_again_when_retries_are_left(
    db_path: Path, documents: Path, model_server: ModelServer
) -> None:
    model_server.queue(answer("Sorry, here you go:"), answer(passages(span("Ada Lovelace"))))
    async with model(model_server) as client, kb(db_path, documents, client) as ledger:
        done = await run(ledger, "highlight-annotation", {"resourceId": "ada"}, retry=NO_WAIT)
        assert done.status is jobledger.JobStatus.COMPLETED
        assert (done.attempt, done.failures) == (2, 1)
        assert [m.exact for m in await ledger.marks("ada")] == ["Ada Lovelace"]


async def test_a_truncated_reply_keeps_whole_passages_and_ends_partial(
    db_path: Path, documents: Path, model_server: ModelServer
) -> None:
    whole = (*span("She worked with Charles Babbage"), "A collaborator.")
    cut = passages(whole, (*span("The study shows"), "Evidence."))[:-30]
    model_server.queue(truncated(cut))
    async with model(model_server) as client, kb(db_path, documents, client) as ledger:
        done = await run(ledger, "comment-annotation", {"resourceId": "ada"})
        assert done.status is jobledger.JobStatus.PARTIAL
        assert "cut at max_tokens (2048)" in (done.error or "")
        assert done.result is not None and done.result["created"] == 1
        [mark] = await ledger.marks("ada")
        assert mark.exact == "She worked with Charles Babbage"
        assert mark.annotation["body"] == [
            {"type": "TextualBody", "value": "A collaborator.", "purpose": "commenting"}
        ]


async def test_a_passage_not_in_the_text_is_reported_not_dropped(
    db_path: Path, documents: Path, model_server: ModelServer
) -> None:
    real = (*span("Charles Babbage"), "Person")
    invented = ("Grace Hopper", 10, 22, "Person")
    not_asked = (*span("London"), "Organization")
    model_server.queue(answer(passages(real, invented, not_asked)))
    params = {"resourceId": "ada", "entityTypes": ["Person", "Location"]}
    async with model(model_server) as client, kb(db_path, documents, client) as ledger:
        done = await run(ledger, "reference-annotation", params)
        assert done.status is jobledger.JobStatus.PARTIAL
        assert done.error == (
            "1 of 3 passages are not in the text (no mark made): 'Grace Hopper'; "
            "1 of 3 passages came without an entity type of those asked for (no mark made): "
            "'London'"
        )
        assert done.result is not None
        counts = [done.result[k] for k in ("found", "created", "unmatched", "rejected")]
        assert counts == [3, 1, 1, 1]
        assert done.result["byLabel"] == {"Person": 1}


async def test_the_tag_worker_asks_once_per_category_and_goes_on_past_a_failure(
    db_path: Path, documents: Path, model_server: ModelServer
) -> None:
    model_server.on("'Claim'", answer(passages(span("they should count as the first program"))))
    model_server.on("'Evidence'", answer("no idea"))
    model_server.on("'Warrant'", answer("[]"))
    model_server.on("'Rebuttal'", answer(passages(span("However, critics argue"))))
    params = {"resourceId": "ada", "schemaId": "argument-toulmin"}
    async with model(model_server) as client, kb(db_path, documents, client) as ledger:
        done = await run(ledger, "tag-annotation", params)
        assert done.status is jobledger.JobStatus.PARTIAL
        assert "category Evidence" in (done.error or "")
        assert done.result is not None
        assert done.result["byLabel"] == {"Claim": 1, "Rebuttal": 1}
        progress = [
            e.data.message  # type: ignore[attr-defined]
            for e in await ledger.history(done.id)
            if e.type == "job.progressed" and e.data.stage == "analyzing"  # type: ignore[attr-defined]
        ]
        assert progress == [f"category {n} of 4: {c}" for n, c in enumerate(
            ["Claim", "Evidence", "Warrant", "Rebuttal"], start=1
        )]  # fmt: skip
    assert len(model_server.requests) == 4


# -- generation ----------------------------------------------------------------


async def test_generation_creates_a_resource_and_links_the_reference_to_it(
    db_path: Path, documents: Path
) -> None:
    async with kb(db_path, documents) as ledger:
        references = await run(ledger, "reference-annotation", PARAMS["reference-annotation"])
        assert references.status is jobledger.JobStatus.COMPLETED
        reference = next(m for m in await ledger.marks("ada") if m.exact == "Charles Babbage")
        params = {
            "title": "Charles Babbage",
            "prompt": "Who he was and what he built",
            "sourceResourceId": "ada",
            "referenceMarkId": reference.id,
        }
        done = await run(ledger, "generation", params)
        assert done.status is jobledger.JobStatus.COMPLETED, done.error
        assert done.result is not None and done.result["linkedMarkId"] == reference.id
        resource = await ledger.resource(done.result["resourceId"])
        assert (resource.name, resource.job_id) == ("Charles Babbage", done.id)
        content = await ledger.content(resource.id)
        assert content.decode().startswith("# Charles Babbage")
        assert resource.size == len(content) == done.result["size"]
        linked = await ledger.mark(reference.id)
        assert linked.annotation["body"][-1] == {
            "type": "SpecificResource",
            "source": resource.id,
            "purpose": "linking",
        }
        assert await commands_of(ledger, done.id) == [
            "job.created",
            "job.started",
            "progress:fetching",
            "progress:generating",
            "progress:creating",
            "resource.created",
            "progress:linking",
            "mark.body_updated",
            "job.completed",
        ]


async def test_concurrent_generations_each_link_their_own_resource(
    db_path: Path, documents: Path
) -> None:
    async with kb(db_path, documents) as ledger:
        await run(ledger, "reference-annotation", PARAMS["reference-annotation"])
        references = await ledger.marks("ada")
        assert len(references) >= 3
        jobs = await asyncio.gather(
            *(
                ledger.submit(
                    "generation",
                    {
                        "title": f"About {m.exact}",
                        "referenceMarkId": m.id,
                        "sourceResourceId": "ada",
                    },
                    user=ALICE,
                )
                for m in references
            )
        )
        done = [await ledger.wait(j.id, timeout=30) for j in jobs]
        for job, reference in zip(done, references, strict=True):
            assert job.status is jobledger.JobStatus.COMPLETED
            assert job.result is not None
            resource = await ledger.resource(job.result["resourceId"])
            assert resource.job_id == job.id and resource.name == f"About {reference.exact}"
            [link] = (await ledger.mark(reference.id)).annotation["body"][1:]
            assert link["source"] == resource.id


async def test_a_truncated_generation_is_stored_and_ends_partial(
    db_path: Path, documents: Path, model_server: ModelServer
) -> None:
    model_server.queue(truncated("# Babbage\n\nCharles Babbage was an English"))
    async with model(model_server) as client, kb(db_path, documents, client) as ledger:
        done = await run(ledger, "generation", {"title": "Babbage"})
        assert done.status is jobledger.JobStatus.PARTIAL
        assert "cut at max_tokens" in (done.error or "")
        assert done.result is not None
        stored = await ledger.content(done.result["resourceId"])
        assert stored == b"# Babbage\n\nCharles Babbage was an English"


# -- projections ----------------------------------------------------------------


async def test_marks_and_resources_survive_a_restart_and_equal_a_replay(
    db_path: Path, documents: Path
) -> None:
    async with kb(db_path, documents) as ledger:
        for job_type, params in PARAMS.items():
            await run(ledger, job_type, params)
        reference = (await ledger.marks("ada"))[-1]
        await run(ledger, "generation", {"title": "T", "referenceMarkId": reference.id})
        before = await ledger.annotations("ada")
        resources = await ledger.resources()
    async with jobledger.open(db_path) as ledger:
        assert await ledger.annotations("ada") == before
        assert await ledger.resources() == resources
        replayed = await ledger.replay()
        assert sorted(replayed.marks) == sorted(m.id for m in await ledger.marks("ada"))
        assert replayed.marks[reference.id] == await ledger.mark(reference.id)
        assert list(replayed.resources.values()) == resources
        assert (await ledger.verify()).ok
        assert await ledger.rebuild() > 0
        assert await ledger.annotations("ada") == before


# -- the parts -------------------------------------------------------------------


def test_locate_prefers_the_given_offsets_then_the_nearest_occurrence() -> None:
    text = "a cat, a dog, a cat"
    assert locate(text, "a cat", 14, 19) == (14, 19)
    assert locate(text, "a cat", 12, 17) == (14, 19)
    assert locate(text, "a cat", 1, 6) == (0, 5)
    assert locate(text, "a  dog,\na", None, None) == (7, 15)
    assert locate(text, "a cow", 0, 5) is None
    assert locate(text, "a cat", -5, -0) == (0, 5)


def test_parse_passages_takes_fences_and_salvages_a_cut_list() -> None:
    fenced = '```json\n[{"exact": "a", "start": 0, "end": 1}, {"start": 2}, 7]\n```'
    assert parse_passages(fenced, truncated=False) == (
        [{"exact": "a", "start": 0, "end": 1}],
        2,
        False,
    )
    cut = '[{"exact": "a"}, {"exact": "b", "start": 1}, {"exact": "c", "st'
    assert parse_passages(cut, truncated=True) == (
        [{"exact": "a"}, {"exact": "b", "start": 1}],
        0,
        True,
    )
    with pytest.raises(jobledger.annotations.InferenceError):
        parse_passages(cut, truncated=False)
    with pytest.raises(jobledger.annotations.InferenceError):
        parse_passages('{"exact": "a"}', truncated=False)


async def test_the_folder_fetcher_reads_documents_and_refuses_escapes(documents: Path) -> None:
    fetcher = FolderFetcher(documents)
    assert await fetcher.fetch("ada") == TEXT
    for bad in ("../ada", ".hidden", "a/b", ""):
        with pytest.raises(jobledger.ValidationError):
            await fetcher.fetch(bad)
    with pytest.raises(jobledger.NotFound):
        await fetcher.fetch("missing")
    (documents / "latin1.txt").write_bytes("caf\xe9".encode("latin-1"))
    with pytest.raises(jobledger.ValidationError):
        await fetcher.fetch("latin1")


def test_every_job_type_has_its_worker_and_params() -> None:
    workers = annotation_workers(FolderFetcher("."), OfflineClient())
    assert sorted(t for w in workers for t in w.job_types) == sorted(
        t.name for t in ANNOTATION_JOB_TYPES
    )
    for job_type in ANNOTATION_JOB_TYPES:
        assert job_type.params is not None and job_type.result is not None
        assert msgspec.json.schema(job_type.params)


def test_the_offline_tagger_finds_the_words_a_schema_names_by_their_stem() -> None:
    # The schemas named stems ("conclu", "observ") that the offline method,
    # which matches whole words, never found: "In conclusion" tagged nothing.
    client = OfflineClient()
    imrad = TAG_SCHEMAS["scientific-imrad"].categories
    legal = TAG_SCHEMAS["legal-irac"].categories

    def tagged(text: str, categories: dict[str, jobledger.annotations.TagCategory]) -> list[str]:
        rules = {name: list(c.keywords) for name, c in categories.items()}
        return [category for _, category in client.tags(text, rules)]

    text = "Our motivation was clear. We observed it twice. In conclusion, it holds."
    assert tagged(text, imrad) == ["Introduction", "Results", "Discussion"]
    assert tagged("The court decided. Clause 2 provides a remedy.", legal) == [
        "Conclusion",
        "Rule",
    ]


async def test_generation_for_a_missing_reference_mark_stores_one_document_and_ends_partial(
    db_path: Path, documents: Path
) -> None:
    # It failed with NotFound after the resource was stored, so each of its
    # two retries stored another copy: three resources, no result.
    async with kb(db_path, documents) as ledger:
        params = {"title": "Babbage", "referenceMarkId": "mark_gone"}
        done = await run(ledger, "generation", params, retry=NO_WAIT)
        assert done.status is jobledger.JobStatus.PARTIAL
        assert done.attempt == 1
        [resource] = await ledger.resources()
        assert done.result is not None
        assert done.result["resourceId"] == resource.id
        assert done.result["linkedMarkId"] is None
        assert done.error == (
            f"the reference mark mark_gone does not exist; the document is stored as "
            f"{resource.id}, linked from no mark"
        )


def test_the_schema_keywords_that_are_stems_match_their_words_offline() -> None:
    """Regression: stems such as ``observ`` or ``conclu`` were whole-word
    keywords to the offline method, so they never matched ``observed`` or
    ``conclusion``; they are prefixes now."""
    from jobledger.annotations import TAG_SCHEMAS

    text = (
        "Our motivation came from clinics. "
        "An effect was observed in week two. "
        "We conclude that the implications are modest."
    )
    imrad = TAG_SCHEMAS["scientific-imrad"].categories
    client = OfflineClient()
    tagged = {
        name: [span.exact for span, _ in client.tags(text, {name: list(category.keywords)})]
        for name, category in imrad.items()
    }
    assert tagged == {
        "Introduction": ["Our motivation came from clinics."],
        "Methods": [],
        "Results": ["An effect was observed in week two."],
        "Discussion": ["We conclude that the implications are modest."],
    }
    irac = TAG_SCHEMAS["legal-irac"].categories
    ruling = "The statute provides a defence. The court decided it applies."
    assert [
        span.exact for span, _ in client.tags(ruling, {"Rule": list(irac["Rule"].keywords)})
    ] == ["The statute provides a defence."]
    assert [
        span.exact
        for span, _ in client.tags(ruling, {"Conclusion": list(irac["Conclusion"].keywords)})
    ] == ["The court decided it applies."]


# -- regressions from review -------------------------------------------------------


async def test_a_passage_too_large_for_a_w3c_mark_is_rejected_before_any_mark_is_sent(
    db_path: Path, documents: Path, model_server: ModelServer
) -> None:
    # Regression: the Stower refused the mark mid-job (TextQuoteSelector.exact
    # and TextualBody.value hold at most 65,536 characters), so the job failed
    # with no counts while the marks sent before it stayed.
    long_sentence = "word " * 14_000 + "end."
    (documents / "big.md").write_text("Ada Lovelace wrote the first program. " + long_sentence)
    long_comment = (*span("Charles Babbage"), "x" * 70_000)
    model_server.queue(answer(passages((*span("Ada Lovelace"), "A pioneer."), long_comment)))
    async with kb(db_path, documents) as ledger:
        done = await run(ledger, "highlight-annotation", {"resourceId": "big", "density": 1})
        assert done.status is jobledger.JobStatus.PARTIAL
        assert done.result is not None
        counts = [done.result[k] for k in ("found", "created", "rejected")]
        assert counts == [2, 1, 1]
        assert "1 of 2 passages do not fit a W3C mark (no mark made)" in (done.error or "")
        assert f"a quote of {len(long_sentence)} characters, over 65536" in (done.error or "")
        assert [m.exact for m in await ledger.marks("big")] == [
            "Ada Lovelace wrote the first program."
        ]
    async with model(model_server) as client, kb(db_path, documents, client) as ledger:
        done = await run(ledger, "comment-annotation", {"resourceId": "ada"})
        assert done.status is jobledger.JobStatus.PARTIAL
        assert done.result is not None and done.result["rejected"] == 1
        assert "a body that does not fit" in (done.error or "")
        assert [m.exact for m in await ledger.marks("ada")] == ["Ada Lovelace"]


def test_an_exact_of_only_whitespace_is_never_located() -> None:
    # Regression: "  " matched the first run of spaces and made a blank mark.
    assert locate("a  b\n\nc", "  ", 1, 3) is None
    assert locate("a  b\n\nc", "\n\n", None, None) is None
    assert locate("a  b", "a  b", 0, 4) == (0, 4)


async def test_the_folder_fetcher_keeps_line_endings_and_types_its_errors(
    documents: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Regression: read_text turned \r\n and \r into \n, shifting every offset.
    (documents / "crlf.txt").write_bytes(b"one\r\ntwo\rthree\n")
    fetcher = FolderFetcher(documents)
    assert await fetcher.fetch("crlf") == "one\r\ntwo\rthree\n"
    (documents / "latin1.txt").write_bytes("caf\xe9".encode("latin-1"))
    with pytest.raises(jobledger.ValidationError) as refused:
        await fetcher.fetch("latin1")
    assert refused.value.field == "resource_id"

    def unreadable(self: Path) -> bytes:
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "read_bytes", unreadable)
    with pytest.raises(jobledger.core.StorageError) as failed:
        await fetcher.fetch("crlf")
    assert "crlf.txt" in str(failed.value)
    assert isinstance(failed.value.__cause__, PermissionError)


def test_parse_passages_types_deep_nesting_and_a_reply_cut_before_its_list() -> None:
    # Regression: deep nesting raised RecursionError; a reply cut before its
    # "[" was "not a JSON list" (retried) instead of cut with no passages.
    with pytest.raises(jobledger.annotations.InferenceError) as caught:
        parse_passages("[" * 100_000, truncated=False)
    assert "not valid JSON" in str(caught.value)
    assert parse_passages("[" * 100_000, truncated=True) == ([], 0, True)
    assert parse_passages('[{"exact": "a"}, ' + "[" * 100_000, truncated=True) == (
        [{"exact": "a"}],
        0,
        True,
    )
    assert parse_passages("Here are the passages you", truncated=True) == ([], 0, True)
    with pytest.raises(jobledger.annotations.InferenceError):
        parse_passages("Here are the passages you", truncated=False)


async def test_a_reply_cut_before_its_list_ends_the_job_partial(
    db_path: Path, documents: Path, model_server: ModelServer
) -> None:
    model_server.queue(truncated("Here are the passages worth a comment, with"))
    async with model(model_server) as client, kb(db_path, documents, client) as ledger:
        done = await run(ledger, "comment-annotation", {"resourceId": "ada"})
        assert done.status is jobledger.JobStatus.PARTIAL
        assert done.attempt == 1
        assert "cut at max_tokens (2048); kept the 0 passages" in (done.error or "")
        assert done.result is not None and done.result["created"] == 0


class ThreadRecordingClient(OfflineClient):
    """The offline client, noting for each method whether it ran on the event loop."""

    def __init__(self) -> None:
        self.on_loop: dict[str, bool] = {}

    def _note(self, method: str) -> None:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            self.on_loop[method] = False
        else:
            self.on_loop[method] = True

    def highlights(self, *args: Any, **kw: Any) -> Any:
        self._note("highlights")
        return super().highlights(*args, **kw)

    def comments(self, *args: Any, **kw: Any) -> Any:
        self._note("comments")
        return super().comments(*args, **kw)

    def assessments(self, *args: Any, **kw: Any) -> Any:
        self._note("assessments")
        return super().assessments(*args, **kw)

    def tags(self, *args: Any, **kw: Any) -> Any:
        self._note("tags")
        return super().tags(*args, **kw)

    def references(self, *args: Any, **kw: Any) -> Any:
        self._note("references")
        return super().references(*args, **kw)

    def generate_document(self, *args: Any, **kw: Any) -> Any:
        self._note("generate_document")
        return super().generate_document(*args, **kw)


async def test_the_offline_methods_run_off_the_event_loop(db_path: Path, documents: Path) -> None:
    # Regression: they ran on the loop, holding up the Stower and heartbeats
    # for as long as a large document took to read.
    client = ThreadRecordingClient()
    async with kb(db_path, documents, client) as ledger:
        for job_type, params in [*PARAMS.items(), ("generation", {"title": "T"})]:
            done = await run(ledger, job_type, params)
            assert done.status is jobledger.JobStatus.COMPLETED, done.error
    assert client.on_loop == dict.fromkeys(
        ["highlights", "comments", "assessments", "tags", "references", "generate_document"],
        False,
    )


class _DiesOnce(jobledger.annotations.GenerationWorker):
    """A generation worker whose first attempt dies after it stored the
    document, before (``after_link=False``) or after it linked it."""

    def __init__(self, fetcher: FolderFetcher, *, after_link: bool) -> None:
        super().__init__(fetcher)
        self.after_link = after_link

    async def _link(self, ctx: jobledger.JobContext, *args: Any, **kw: Any) -> Any:
        if ctx.attempt == 1 and not self.after_link:
            raise RuntimeError("the worker died before linking")
        result = await super()._link(ctx, *args, **kw)
        if ctx.attempt == 1:
            raise RuntimeError("the worker died after linking")
        return result


@pytest.mark.parametrize("after_link", [False, True], ids=["before-link", "after-link"])
async def test_a_retried_generation_stores_one_document_and_links_it_once(
    db_path: Path, documents: Path, after_link: bool
) -> None:
    worker = _DiesOnce(FolderFetcher(documents), after_link=after_link)
    async with jobledger.open(db_path, workers=[worker], poll_interval=0.01) as ledger:
        mark = await ledger.create_mark(
            "ada", jobledger.Annotation.on_text("ada", TEXT, 0, 12, motivation="linking")
        )
        params = {"title": "Ada", "referenceMarkId": mark.id}
        job = await ledger.submit("generation", params, max_retries=1, retry=NO_WAIT)
        done = await ledger.wait(job.id, timeout=30)
        assert (done.status, done.attempt) == ("completed", 2)
        [resource] = await ledger.resources()
        assert resource.id == f"res_{job.id}" and resource.job_id == job.id
        assert done.result is not None and done.result["resourceId"] == resource.id
        assert done.result["size"] == resource.size
        links = (await ledger.mark(mark.id)).annotation["body"]
        assert links == [{"type": "SpecificResource", "source": resource.id, "purpose": "linking"}]


class _HighlightDiesOnce(jobledger.annotations.HighlightWorker):
    """Its first attempt dies after it made its first two marks."""

    async def execute(self, job: jobledger.Job, ctx: jobledger.JobContext) -> Any:
        if ctx.attempt > 1:
            return await super().execute(job, ctx)
        made = 0
        create = ctx.create_mark

        async def create_then_die(*args: Any, **kw: Any) -> str:
            nonlocal made
            if made == 2:
                raise RuntimeError("the worker died mid-way")
            made += 1
            return await create(*args, **kw)

        ctx.create_mark = create_then_die  # type: ignore[method-assign]
        return await super().execute(job, ctx)


async def test_a_retried_annotation_job_leaves_only_its_last_attempts_marks(
    db_path: Path, documents: Path
) -> None:
    worker = _HighlightDiesOnce(FolderFetcher(documents))
    async with jobledger.open(db_path, workers=[worker], poll_interval=0.01) as ledger:
        params = {"resourceId": "ada", "density": 25}
        job = await ledger.submit("highlight-annotation", params, max_retries=1, retry=NO_WAIT)
        done = await ledger.wait(job.id, timeout=30)
        assert (done.status, done.attempt) == ("completed", 2)
        assert done.result is not None
        marks = await ledger.marks("ada")
        assert len(marks) == done.result["created"] > 2
        caused = await commands_of(ledger, job.id)
        second = caused.index("job.started", caused.index("job.started") + 1)
        assert caused[second + 1 : second + 4] == [
            "progress:clearing",
            "mark.deleted",
            "mark.deleted",
        ]
        assert caused[:second].count("mark.created") == 2
