"""A tiny knowledge base on jobledger: a folder of documents, the six
annotation workers, live progress from a subscription, and the marks.

Run: python examples/knowledge_base.py [path/to/kb.db]

It annotates ``documents/ada-lovelace.md`` with every kind of mark, writes a
page about a person it found (a generation job, linked from that person's
reference mark), highlights the page it wrote (read back from the ledger),
and tags every document of the folder with its structural roles. A
subscription prints every event as it is logged; at the end the marks are
listed and the log is verified.

No model runs by default (the offline client: deterministic extracts, and
every result says so). Set ``JOBLEDGER_MODEL_URL`` (and ``JOBLEDGER_MODEL``)
to use an OpenAI-compatible server instead; see docs/models.md.
"""

from __future__ import annotations

import asyncio
import os
import sys
from contextlib import AsyncExitStack, aclosing
from pathlib import Path
from typing import Any

import jobledger
import jobledger.core
from jobledger.annotations import (
    ANNOTATION_JOB_TYPES,
    FolderFetcher,
    InferenceClient,
    LedgerFetcher,
    OfflineClient,
    OpenAIClient,
    annotation_workers,
)

DOCUMENTS = Path(__file__).resolve().parent / "documents"
DOCUMENT = "ada-lovelace"
SCHEMAS = {
    "ada-lovelace": "argument-toulmin",
    "river-case": "legal-irac",
    "sleep-study": "scientific-imrad",
}
ALICE = jobledger.User(id="alice", name="Alice", email="alice@kb.example", domain="kb.example")
JOBS = 5 + 1 + 1 + (len(SCHEMAS) - 1)  # five kinds of marks, a page, its highlights, tags


def make_client() -> InferenceClient:
    """A model server if the environment names one, else the offline client."""
    if os.environ.get("JOBLEDGER_MODEL_URL"):
        return OpenAIClient()
    return OfflineClient()


def short(text: str | None, size: int = 48) -> str:
    flat = " ".join((text or "").split())
    return repr(flat if len(flat) <= size else flat[: size - 1] + "…")


async def follow(ledger: jobledger.Ledger, after: int) -> None:
    """Print every event after ``after`` as it is logged, until ``JOBS`` jobs ended."""
    labels: dict[str, str] = {}
    ended: set[str] = set()
    async with aclosing(ledger.events(after=after, follow=True)) as events:
        async for env in events:
            data: Any = env.data
            job_id = env.correlation_id or env.stream
            if env.type == "job.created":
                what = data.params.get("resourceId") or data.params.get("title")
                labels[job_id] = f"{data.job_type.removesuffix('-annotation')}({what})"
            label = f"#{env.seq:<4} {labels.get(job_id, job_id[-8:]):<42}"
            if env.type == "job.progressed":
                print(f"{label} {data.percent:3.0f}% {data.stage}: {data.message}")
            elif env.type == "mark.created":
                quote = next(
                    (
                        s["exact"]
                        for s in data.annotation["target"].get("selector", [])
                        if s["type"] == "TextQuoteSelector"
                    ),
                    None,
                )
                print(f"{label} + {data.annotation['motivation']} {short(quote)}")
            elif env.type == "resource.created":
                print(f"{label} + resource {data.resource_id} {data.name!r} ({data.size} bytes)")
            elif env.type == "mark.body_updated":
                print(f"{label} ~ linked mark {data.mark_id}")
            elif jobledger.core.ends_job(env):
                print(f"{label} {env.type.removeprefix('job.')}")
                job = await ledger.get(job_id, user=ALICE)
                if job.status in jobledger.core.TERMINAL:
                    ended.add(job_id)
                    if len(ended) == JOBS:
                        return
            else:
                print(f"{label} {env.type.removeprefix('job.')}")


async def submit(ledger: jobledger.Ledger, job_type: str, params: dict[str, Any]) -> jobledger.Job:
    job = await ledger.submit(job_type, params, user=ALICE)
    return await ledger.wait(job.id, timeout=300)


async def annotate(ledger: jobledger.Ledger) -> list[jobledger.Job]:
    """The jobs of the knowledge base, in the order a user would ask for them."""
    kinds: list[tuple[str, dict[str, Any]]] = [
        ("highlight-annotation", {"resourceId": DOCUMENT, "density": 3}),
        ("comment-annotation", {"resourceId": DOCUMENT, "tone": "explanatory"}),
        ("assessment-annotation", {"resourceId": DOCUMENT, "tone": "balanced"}),
        ("tag-annotation", {"resourceId": DOCUMENT, "schemaId": SCHEMAS[DOCUMENT]}),
        (
            "reference-annotation",
            {"resourceId": DOCUMENT, "entityTypes": ["Person", "Location", "Date"]},
        ),
    ]
    done = list(await asyncio.gather(*(submit(ledger, t, p) for t, p in kinds)))
    people = [
        m
        for m in await ledger.marks(DOCUMENT)
        if m.motivation == "linking" and m.annotation["body"][0]["value"] == "Person"
    ]
    page: dict[str, Any] = {"title": "About this document", "sourceResourceId": DOCUMENT}
    if people:
        person = people[-1]
        page = {
            "title": person.exact or "A person",
            "prompt": f"who {person.exact} was, from what the source says",
            "sourceResourceId": DOCUMENT,
            "referenceMarkId": person.id,
        }
    generation = await submit(ledger, "generation", page)
    done.append(generation)
    # The page it wrote, read back from the ledger (the document again if none was).
    page_id = generation.result["resourceId"] if generation.result else DOCUMENT
    done.append(await submit(ledger, "highlight-annotation", {"resourceId": page_id}))
    others = [d for d in SCHEMAS if d != DOCUMENT]
    tags = [
        submit(ledger, "tag-annotation", {"resourceId": d, "schemaId": SCHEMAS[d]}) for d in others
    ]
    done.extend(await asyncio.gather(*tags))
    return done


async def list_marks(ledger: jobledger.Ledger, resource_id: str, name: str) -> None:
    marks = await ledger.marks(resource_id)
    print(f"\n{name}: {len(marks)} marks")
    for mark in marks:
        bodies = [
            b.get("value") or f"-> {b.get('source')}" for b in mark.annotation.get("body", [])
        ]
        print(f"  {mark.motivation:<12} {short(mark.exact, 40):<42} {' | '.join(bodies)[:90]}")


async def main(path: str) -> None:
    print("documents:", ", ".join(sorted(p.stem for p in DOCUMENTS.glob("*.md"))))
    # The ledger's own resources (the pages generation jobs write), else the folder.
    fetcher = LedgerFetcher(fallback=FolderFetcher(DOCUMENTS))
    async with AsyncExitStack() as stack:
        client = make_client()
        if isinstance(client, OpenAIClient):
            await stack.enter_async_context(client)
        print("client:", client.name, "(offline)" if client.offline else "")
        ledger = await stack.enter_async_context(
            jobledger.open(
                path, workers=annotation_workers(fetcher, client), job_types=ANNOTATION_JOB_TYPES
            )
        )
        fetcher.bind(ledger)
        follower = asyncio.create_task(follow(ledger, await ledger.head()))
        jobs = await annotate(ledger)
        await follower
        print()
        for job in jobs:
            counts = {k: v for k, v in (job.result or {}).items() if k in ("found", "created")}
            print(f"{job.job_type:<22} {job.status:<9} {counts or job.result} {job.error or ''}")
        await list_marks(ledger, DOCUMENT, f"{DOCUMENT}.md")
        for resource in await ledger.resources():
            await list_marks(ledger, resource.id, f"{resource.name} ({resource.id})")
        print("log verified:", (await ledger.verify()).ok)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else "knowledge-base.db"))
