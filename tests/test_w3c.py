"""Marks conform to the W3C Web Annotation Data Model (issue 13): every MUST
with an annotation that keeps it (accepted, stored as given) and one that
breaks it (a ``ValidationError`` naming the MUST, nothing written); exports
name resources and marks by IRI and round-trip through ``create_mark``.
The annotations here are written for these tests (none is copied from the
W3C's test suite)."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

import jobledger
from jobledger.cli import main
from jobledger.core.w3c import check_annotation, iri_of

CONTEXT = "http://www.w3.org/ns/anno.jsonld"
TEXT = "Mary Somerville explained the connexion of the physical sciences."
PAGE = "https://example.net/essays/somerville"


def document(**fields: Any) -> dict[str, Any]:
    """A small W3C annotation on an external page; ``fields`` replace or add
    properties (a value of ``None`` removes one)."""
    doc: dict[str, Any] = {
        "@context": CONTEXT,
        "id": "https://example.net/notes/1",
        "type": "Annotation",
        "target": PAGE,
    }
    for key, value in fields.items():
        if value is None:
            doc.pop(key, None)
        else:
            doc[key] = value
    return doc


def on(*selectors: Any) -> dict[str, Any]:
    return document(target={"source": PAGE, "selector": list(selectors)})


# Each MUST: an annotation that keeps it, one that breaks it, and the words
# the refusal must say.
MUSTS: list[tuple[str, dict[str, Any], object, str]] = [
    ("context", document(), document(**{"@context": "https://example.net/ctx"}), "@context MUST"),
    (
        "context in a list",
        document(**{"@context": [CONTEXT, "https://example.net/x"]}),
        document(id=None, **{"@context": None}),
        "MUST have @context",
    ),
    ("an object", document(), ["not", "an", "object"], "an annotation MUST be a JSON object"),
    (
        "one id",
        document(),
        document(id=["https://a.example/1", "https://a.example/2"]),
        "MUST have one IRI as id",
    ),
    ("id an IRI", document(id="urn:uuid:1d9a"), document(id="note one"), "MUST have one IRI as id"),
    (
        "type",
        document(type=["Annotation", "Note"]),
        document(type="Note"),
        "type MUST be or include 'Annotation'",
    ),
    ("a target", document(), document(target=None), "MUST have at least one target"),
    (
        "target kinds",
        document(target=[PAGE, {"id": "https://example.net/i.png", "type": "Image"}]),
        document(target=42),
        "a target MUST be an IRI or an object",
    ),
    (
        "target string",
        document(target="urn:isbn:0-395-36341-1"),
        document(target="two words"),
        "a target given as a string MUST be an IRI",
    ),
    (
        "target not text",
        document(body={"type": "TextualBody", "value": "x"}),
        document(target={"type": "TextualBody", "value": "x"}),
        "a target MUST NOT be a TextualBody",
    ),
    (
        "body string",
        document(body="https://example.net/reply/9"),
        document(body="a reply"),
        "a body given as a string MUST be an IRI",
    ),
    (
        "body or bodyValue",
        document(bodyValue="A sharp reader."),
        document(body="https://example.net/r", bodyValue="x"),
        "MUST NOT have both body and bodyValue",
    ),
    (
        "bodyValue a string",
        document(bodyValue="x"),
        document(bodyValue=["x", "y"]),
        "bodyValue MUST be a single string",
    ),
    (
        "textual value",
        document(body={"type": "TextualBody", "value": "v", "language": "en"}),
        document(body={"type": "TextualBody", "format": "text/plain"}),
        "a TextualBody MUST have a value",
    ),
    (
        "textual no items",
        document(body={"type": "TextualBody", "value": "v"}),
        document(body={"type": "TextualBody", "value": "v", "items": [PAGE]}),
        "a TextualBody MUST NOT have items",
    ),
    (
        "external id",
        document(body={"id": "https://example.net/v.mp4", "type": "Video"}),
        document(body={"type": "Video", "format": "video/mp4"}),
        "an External Web Resource body MUST have one IRI as id",
    ),
    (
        "external no purpose",
        document(body={"id": "https://example.net/a", "format": "text/html"}),
        document(body={"id": "https://example.net/a", "purpose": "tagging"}),
        "an External Web Resource MUST NOT have a purpose",
    ),
    (
        "format a string",
        document(body={"id": "https://example.net/a", "format": "text/html"}),
        document(body={"id": "https://example.net/a", "format": 7}),
        "format MUST be a string",
    ),
    (
        "text direction",
        document(body={"type": "TextualBody", "value": "v", "textDirection": "rtl"}),
        document(body={"type": "TextualBody", "value": "v", "textDirection": "up"}),
        "textDirection MUST be one of ltr, rtl, auto",
    ),
    (
        "processing language",
        document(body={"id": "https://example.net/a", "processingLanguage": "en"}),
        document(body={"id": "https://example.net/a", "processingLanguage": ["en", "fr"]}),
        "processingLanguage MUST be a single string",
    ),
    (
        "choice",
        document(
            body={
                "type": "Choice",
                "items": [
                    {"type": "TextualBody", "value": "Ja", "language": "de"},
                    "https://example.net/yes",
                ],
            }
        ),
        document(body={"type": "Choice", "items": []}),
        "a Choice MUST have items",
    ),
    (
        "choice no value",
        document(body={"type": "Choice", "items": ["https://example.net/a"]}),
        document(body={"type": "Choice", "items": ["https://example.net/a"], "value": "x"}),
        "a Choice MUST NOT have a value",
    ),
    (
        "removed types",
        document(target=[PAGE, "https://example.net/other"]),
        document(target={"type": "List", "items": [PAGE]}),
        "the W3C removed",
    ),
    (
        "items only on a Choice",
        document(body={"type": "Choice", "items": [PAGE]}),
        document(body={"items": [PAGE]}),
        "MUST NOT have items (only a Choice has them)",
    ),
    (
        "specific source",
        document(target={"source": PAGE}),
        document(target={"type": "SpecificResource", "purpose": "tagging"}),
        "a SpecificResource MUST have a source",
    ),
    (
        "specific no value",
        document(target={"source": PAGE, "purpose": "tagging"}),
        document(target={"type": "SpecificResource", "source": PAGE, "value": "x"}),
        "a SpecificResource MUST NOT have a value",
    ),
    (
        "created",
        document(created="2031-02-03T04:05:06Z"),
        document(created="last week"),
        "created MUST be one xsd:dateTime",
    ),
    (
        "created has a zone",
        document(created="2031-02-03T04:05:06+02:00"),
        document(created="2031-02-03T04:05:06"),
        "created MUST be one xsd:dateTime",
    ),
    (
        "modified single",
        document(modified="2031-02-03T04:05:06Z"),
        document(modified=["2031-02-03T04:05:06Z", "2031-02-04T04:05:06Z"]),
        "modified MUST be one xsd:dateTime",
    ),
    (
        "generated",
        document(generated="2031-02-03T04:05:06.5Z"),
        document(generated="soon"),
        "generated MUST be one xsd:dateTime",
    ),
    (
        "rights",
        document(rights=["https://creativecommons.org/licenses/by/4.0/"]),
        document(rights="all rights reserved"),
        "rights MUST be an IRI",
    ),
    (
        "canonical",
        document(canonical="urn:uuid:77"),
        document(canonical=["urn:a:1", "urn:a:2"]),
        "canonical MUST be one IRI",
    ),
    (
        "via",
        document(via="https://example.org/anno/5"),
        document(via="elsewhere"),
        "via MUST be an IRI",
    ),
    (
        "creator",
        document(
            creator={
                "id": "https://example.net/u/ms",
                "type": "Person",
                "name": "M. S.",
                "nickname": "ms",
                "email": "mailto:m@x.example",
            }
        ),
        document(creator=3),
        "a creator MUST be an IRI, an Agent",
    ),
    (
        "generator",
        document(generator="https://example.net/tools/annotator"),
        document(generator=[]),
        "a generator MUST be an IRI, an Agent",
    ),
    (
        "audience",
        document(audience={"type": "schema:Audience", "schema:audienceType": "pupils"}),
        document(audience=12),
        "an audience MUST be an IRI or an object",
    ),
    (
        "stylesheet",
        document(
            stylesheet={"type": "CssStylesheet", "value": ".a { color: red }"},
            target={"source": PAGE, "styleClass": "a"},
        ),
        document(target={"source": PAGE, "styleClass": "a"}),
        "an annotation with a styleClass MUST have a stylesheet",
    ),
    (
        "motivation",
        document(motivation=["commenting", "tagging"]),
        document(motivation="liking"),
        "a motivation MUST be one of the W3C motivations",
    ),
    (
        "fragment value",
        on(
            {
                "type": "FragmentSelector",
                "value": "xywh=1,2,3,4",
                "conformsTo": "http://www.w3.org/TR/media-frags/",
            }
        ),
        on({"type": "FragmentSelector"}),
        "a FragmentSelector MUST have a value",
    ),
    (
        "css value",
        on({"type": "CssSelector", "value": "#intro > p"}),
        on({"type": "CssSelector", "value": ["p", "div"]}),
        "a CssSelector MUST have a value",
    ),
    (
        "xpath value",
        on({"type": "XPathSelector", "value": "/html/body/p[2]"}),
        on({"type": "XPathSelector", "value": 2}),
        "a XPathSelector MUST have a value",
    ),
    (
        "quote exact",
        on({"type": "TextQuoteSelector", "exact": "physical", "prefix": "the "}),
        on({"type": "TextQuoteSelector", "prefix": "the "}),
        "a TextQuoteSelector MUST have exact",
    ),
    (
        "text position",
        on({"type": "TextPositionSelector", "start": 0, "end": 4}),
        on({"type": "TextPositionSelector", "start": -1, "end": 4}),
        "a TextPositionSelector MUST have start and end as non-negative integers",
    ),
    (
        "data position",
        on({"type": "DataPositionSelector", "start": 10, "end": 20}),
        on({"type": "DataPositionSelector", "start": "10", "end": 20}),
        "a DataPositionSelector MUST have start and end as non-negative integers",
    ),
    (
        "svg",
        on({"type": "SvgSelector", "value": "<svg/>"}),
        on({"type": "SvgSelector"}),
        "an SvgSelector MUST have a value",
    ),
    (
        "range",
        on(
            {
                "type": "RangeSelector",
                "startSelector": {"type": "XPathSelector", "value": "//p[1]"},
                "endSelector": {"type": "XPathSelector", "value": "//p[3]"},
            }
        ),
        on({"type": "RangeSelector", "startSelector": {"type": "XPathSelector", "value": "//p"}}),
        "a RangeSelector MUST have a startSelector and an endSelector",
    ),
    (
        "selector kind",
        on("https://example.net/selectors/7"),
        on({"type": "SquareSelector"}),
        "a selector MUST be an IRI or an object whose type is one of",
    ),
    (
        "refinedBy",
        on(
            {
                "type": "FragmentSelector",
                "value": "page=3",
                "refinedBy": {"type": "TextQuoteSelector", "exact": "sciences"},
            }
        ),
        on(
            {
                "type": "FragmentSelector",
                "value": "page=3",
                "refinedBy": {"type": "TextQuoteSelector"},
            }
        ),
        "a TextQuoteSelector MUST have exact",
    ),
    (
        "time state",
        document(
            target={
                "source": PAGE,
                "state": {
                    "type": "TimeState",
                    "sourceDate": "2030-01-01T00:00:00Z",
                    "cached": "https://c.example/1",
                },
            }
        ),
        document(
            target={
                "source": PAGE,
                "state": {"type": "TimeState", "sourceDateStart": "2030-01-01T00:00:00Z"},
            }
        ),
        "a TimeState MUST have sourceDate, or else both",
    ),
    (
        "request state",
        document(
            target={
                "source": PAGE,
                "state": {
                    "type": "HttpRequestState",
                    "value": "Accept: text/html",
                    "refinedBy": {"type": "CssSelector", "value": "p"},
                },
            }
        ),
        document(target={"source": PAGE, "state": {"type": "HttpRequestState"}}),
        "an HttpRequestState MUST have a value",
    ),
]


@pytest.mark.parametrize(("name", "kept", "broken", "must"), MUSTS, ids=[m[0] for m in MUSTS])
async def test_each_must_accepts_an_annotation_that_keeps_it_and_refuses_one_that_breaks_it(
    tmp_path: Path, name: str, kept: dict[str, Any], broken: object, must: str
) -> None:
    async with jobledger.open(tmp_path / "jobs.db") as ledger:
        mark = await ledger.create_mark("doc", copy.deepcopy(kept))
        assert mark.annotation == kept  # stored as given
        head = await ledger.head()
        with pytest.raises(jobledger.ValidationError) as refused:
            await ledger.create_mark("doc", broken)  # type: ignore[arg-type]
        assert must in str(refused.value)
        assert refused.value.field is not None and refused.value.field.startswith("annotation")
        assert await ledger.head() == head  # nothing written


def test_a_refusal_names_every_must_broken_the_w3c_ones_first() -> None:
    broken = document(id=["urn:a:1", "urn:a:2"], created="soon", note="typo")
    with pytest.raises(jobledger.ValidationError) as refused:
        check_annotation(broken, "doc")
    assert refused.value.field == "annotation.id"
    message = str(refused.value)
    assert message.startswith("annotation.id: an annotation MUST have one IRI as id (and 2 more: ")
    assert "annotation.created: created MUST be one xsd:dateTime" in message
    assert message.endswith(
        "annotation.note: 'note' is not a property of a W3C Annotation "
        "(and no other @context defines it))"
    )


def test_a_property_outside_the_model_is_kept_when_another_context_may_define_it() -> None:
    check_annotation(
        document(**{"@context": [CONTEXT, "https://example.net/ctx"]}, note="x"), "doc"
    )
    check_annotation(document(**{"schema:about": {"name": "x"}}), "doc")  # a compact IRI
    with pytest.raises(jobledger.ValidationError, match="'note' is not a property"):
        check_annotation(document(note="x"), "doc")


def test_a_passage_on_a_jobledger_resource_is_checked_and_others_are_kept_as_given() -> None:
    mine = iri_of("resource", "doc")
    span = [
        {"type": "TextPositionSelector", "start": 0, "end": 4},
        {"type": "TextQuoteSelector", "exact": "Mary"},
    ]
    check_annotation(document(target={"source": mine, "selector": span}), "doc")
    wrong = [span[0], {"type": "TextQuoteSelector", "exact": "Mary Somerville"}]
    with pytest.raises(jobledger.ValidationError, match="quotes 15 characters for a span of 4"):
        check_annotation(document(target={"source": mine, "selector": wrong}), "doc")
    check_annotation(document(target={"source": PAGE, "selector": wrong}), "doc")  # not ours
    with pytest.raises(jobledger.ValidationError) as refused:
        check_annotation(document(target=iri_of("resource", "other")), "doc")
    assert refused.value.field == "annotation.target"
    assert "not the mark's resource 'doc'" in str(refused.value)


async def test_an_export_names_marks_and_resources_by_iri_and_round_trips(tmp_path: Path) -> None:
    async with jobledger.open(tmp_path / "jobs.db") as ledger:
        doc = await ledger.create_resource("ms.md", TEXT)
        link = await ledger.create_resource("more.md", "More.")
        note = jobledger.Annotation.on_text(
            doc.id,
            TEXT,
            0,
            15,
            motivation="linking",
            body=[jobledger.SpecificResource(source=link.id, purpose="linking")],
            creator=jobledger.Agent.person(jobledger.User(id="ada lovelace")),
        )
        mark = await ledger.create_mark(doc.id, note)
        assert mark.annotation["target"]["source"] == doc.id  # the stored event is unchanged
        [exported] = await ledger.annotations(doc.id)
        assert exported["id"] == f"urn:jobledger:mark:{mark.id}"
        assert exported["target"]["source"] == f"urn:jobledger:resource:{doc.id}"
        assert exported["body"][0]["source"] == f"urn:jobledger:resource:{link.id}"
        assert exported["creator"]["id"] == "urn:jobledger:user:ada%20lovelace"
        check_annotation(exported, doc.id)

        again = await ledger.create_mark(doc.id, exported)
        assert again.exact == "Mary Somerville" and again.span == (0, 15)
        [_, second] = await ledger.annotations(doc.id)
        # jobledger sets the id; the id the document came with moves to via.
        assert second == {**exported, "id": f"urn:jobledger:mark:{again.id}", "via": exported["id"]}

        [based, _] = await ledger.annotations(doc.id, base_iri="https://kb.example/")
        assert based["id"] == f"https://kb.example/marks/{mark.id}"
        assert based["target"]["source"] == f"https://kb.example/resources/{doc.id}"
        with pytest.raises(jobledger.ValidationError) as refused:
            await ledger.annotations(doc.id, base_iri="kb")
        assert refused.value.field == "base_iri"


async def test_a_w3c_document_round_trips_unchanged_but_for_id(tmp_path: Path) -> None:
    given = document(
        motivation="commenting",
        created="2030-05-06T07:08:09Z",
        creator=["https://example.net/u/1", {"type": "Organization", "name": "Lab"}],
        body=[{"type": "TextualBody", "value": "Read this.", "format": "text/html"}],
        target=[
            {
                "source": PAGE,
                "selector": {
                    "type": "CssSelector",
                    "value": "p.lead",
                    "refinedBy": {"type": "TextPositionSelector", "start": 4, "end": 9},
                },
            },
            "https://example.net/essays/other",
        ],
        via=["https://example.org/origin"],
    )
    async with jobledger.open(tmp_path / "jobs.db") as ledger:
        mark = await ledger.create_mark("doc", given)
        [exported] = await ledger.annotations("doc")
        expected = {**given, "id": f"urn:jobledger:mark:{mark.id}"}
        expected["via"] = ["https://example.org/origin", given["id"]]
        assert exported == expected
        again = await ledger.create_mark("doc", exported)
        [_, second] = await ledger.annotations("doc")
        assert second == {
            **exported,
            "id": f"urn:jobledger:mark:{again.id}",
            "via": [*exported["via"], exported["id"]],
        }


async def test_a_worker_may_create_a_mark_from_a_w3c_document(tmp_path: Path) -> None:
    class Noting(jobledger.JobWorker):
        job_types = ("note",)

        async def execute(self, job: jobledger.Job, ctx: jobledger.JobContext) -> dict[str, Any]:
            await ctx.create_mark("doc", document(bodyValue="Seen."))
            with pytest.raises(jobledger.ValidationError, match="bodyValue MUST be a single"):
                await ctx.create_mark("doc", document(bodyValue=7))
            return {}

    async with jobledger.open(tmp_path / "jobs.db", workers=[Noting()]) as ledger:
        job = await ledger.submit("note", {})
        assert (await ledger.wait(job.id, timeout=10)).status == "completed"
        [mark] = await ledger.marks("doc")
        assert mark.job_id == job.id and mark.annotation["bodyValue"] == "Seen."
        with pytest.raises(
            jobledger.ValidationError, match="MUST NOT have both body and bodyValue"
        ):
            await ledger.update_mark_body(
                mark.id, [jobledger.BodyAdd(item=jobledger.TextualBody(value="x"))]
            )


def test_marks_jsonld_on_the_command_line_passes_every_must(
    tmp_path: Path, capsysbinary: pytest.CaptureFixture[bytes]
) -> None:
    import asyncio

    db = tmp_path / "jobs.db"

    async def fill() -> None:
        async with jobledger.open(db) as ledger:
            doc = await ledger.create_resource("ms.md", TEXT)
            assert doc.id
            await ledger.create_mark(
                "ms", jobledger.Annotation.on_text("ms", TEXT, 5, 15, motivation="highlighting")
            )
            await ledger.create_mark("ms", document(body="https://example.net/r"))

    asyncio.run(fill())
    assert (
        main(["marks", "ms", "--db", str(db), "--jsonld", "--base-iri", "https://kb.example/"]) == 0
    )
    documents = json.loads(capsysbinary.readouterr().out)
    assert len(documents) == 2
    for exported in documents:
        check_annotation(exported, "ms")
        assert exported["@context"] == CONTEXT
        assert exported["id"].startswith("https://kb.example/marks/")
    assert documents[0]["target"]["source"] == "https://kb.example/resources/ms"
    assert documents[1]["via"] == "https://example.net/notes/1"
    assert main(["marks", "ms", "--db", str(db), "--jsonld", "--base-iri", "no"]) == 2


async def test_a_base_iri_that_is_not_a_string_is_a_validation_error(tmp_path: Path) -> None:
    """Found by the fuzz test: ``base_iri=0`` raised a bare TypeError."""
    async with jobledger.open(tmp_path / "jobs.db") as ledger:
        for bad in (0, b"https://x/", ["https://x/"], "https://no-slash", "not an iri/"):
            with pytest.raises(jobledger.ValidationError) as refused:
                await ledger.annotations("doc", base_iri=bad)  # type: ignore[arg-type]
            assert refused.value.field == "base_iri"
