"""The inference clients: OpenAIClient over real HTTP against the fake model
server (tests/model_server.py), and the offline client's extractive methods."""

from __future__ import annotations

import asyncio
import itertools
import math
import socket
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import jobledger
from jobledger import Job, JobContext, JobWorker, ManualClock, ValidationError
from jobledger.annotations import (
    OFFLINE_LABEL,
    ExtractiveMethods,
    Generation,
    InferenceClient,
    InferenceError,
    InferenceStatistics,
    OfflineClient,
    OpenAIClient,
    Span,
    Usage,
)

from .conftest import eventually
from .model_server import (
    ModelServer,
    Reply,
    answer,
    dropped,
    echo,
    held,
    http_error,
    malformed,
    no_content,
    truncated,
)


class Sleeps:
    """An injected sleep: records each wait and returns at once."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


def client_for(server: ModelServer, sleeps: Sleeps, **kw: Any) -> OpenAIClient:
    options: dict[str, Any] = {"base_url": server.url, "model": "m", "env": {}, "sleep": sleeps}
    return OpenAIClient(**(options | kw))


# -- OpenAIClient: the request and a normal reply ---------------------------------------


async def test_a_reply_gives_its_text_and_usage_and_the_request_is_what_was_asked(
    model_server: ModelServer, sleeps: Sleeps
) -> None:
    usage = {"prompt_tokens": 11, "completion_tokens": 3, "total_tokens": 14}
    model_server.queue(answer("Paris is the capital.", model="m-2024", usage=usage))
    async with client_for(model_server, sleeps, api_key="sk-test") as client:
        got = await client.generate("Capital of France?", max_tokens=64, temperature=0.2)
        stats = client.statistics()
    assert got == Generation(
        text="Paris is the capital.",
        usage=Usage(
            prompt_tokens=11,
            completion_tokens=3,
            total_tokens=14,
            model="m-2024",
            finish_reason="stop",
        ),
        truncated=False,
    )
    (request,) = model_server.requests
    assert request.path == "/v1/chat/completions"
    assert request.body == {
        "model": "m",
        "messages": [{"role": "user", "content": "Capital of France?"}],
        "max_tokens": 64,
        "temperature": 0.2,
    }
    assert request.headers["authorization"] == "Bearer sk-test"
    assert stats == InferenceStatistics(
        requests=1,
        retries=0,
        generations=1,
        failures=0,
        truncated=0,
        prompt_tokens=11,
        completion_tokens=3,
    )
    assert sleeps.waits == []


async def test_without_a_key_no_authorization_header_is_sent(
    model_server: ModelServer, sleeps: Sleeps
) -> None:
    model_server.queue(answer("ok"))
    async with client_for(model_server, sleeps) as client:
        assert await client.generate_text("hi", max_tokens=5, temperature=0) == "ok"
    assert "authorization" not in model_server.requests[0].headers


async def test_configuration_comes_from_the_environment_jobledger_names_first(
    model_server: ModelServer,
) -> None:
    env = {
        "JOBLEDGER_MODEL_URL": model_server.url,
        "OPENAI_BASE_URL": "http://127.0.0.1:9/v1",
        "JOBLEDGER_MODEL": "llama-3",
        "OPENAI_MODEL": "gpt-x",
        "OPENAI_API_KEY": "sk-env",
    }
    model_server.queue(answer("ok"))
    async with OpenAIClient(env=env) as client:
        assert (client.base_url, client.model, client.name) == (
            model_server.url,
            "llama-3",
            "llama-3",
        )
        await client.generate_text("hi", max_tokens=5, temperature=0)
    assert model_server.requests[0].body["model"] == "llama-3"
    assert model_server.requests[0].headers["authorization"] == "Bearer sk-env"
    fallback = OpenAIClient(env={"OPENAI_BASE_URL": "http://h/v1/", "OPENAI_MODEL": "gpt-x"})
    assert (fallback.base_url, fallback.model) == ("http://h/v1", "gpt-x")
    await fallback.close()
    named = OpenAIClient(base_url="http://h/v1", model="x", name="house-model", env={})
    assert named.name == "house-model"
    await named.close()


@pytest.mark.parametrize(
    ("kw", "field"),
    [
        ({"model": "m"}, "base_url"),
        ({"base_url": "ftp://h/v1", "model": "m"}, "base_url"),
        ({"base_url": "http://[::1/v1", "model": "m"}, "base_url"),
        ({"base_url": "http:///v1", "model": "m"}, "base_url"),
        ({"base_url": "http://h/v1"}, "model"),
        ({"base_url": "http://h/v1", "model": "m", "timeout": 0}, "timeout"),
        ({"base_url": "http://h/v1", "model": "m", "max_retries": -1}, "max_retries"),
    ],
)
def test_missing_or_bad_configuration_is_a_validation_error(kw: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as caught:
        OpenAIClient(env={}, **kw)
    assert caught.value.field == field


@pytest.mark.parametrize(
    ("max_tokens", "temperature", "field"),
    [
        (0, 0.5, "max_tokens"),
        (True, 0.5, "max_tokens"),
        (5, -0.1, "temperature"),
        (5, math.nan, "temperature"),
        (5, math.inf, "temperature"),
    ],
)
async def test_bad_arguments_are_refused_before_anything_is_sent(
    model_server: ModelServer, sleeps: Sleeps, max_tokens: int, temperature: float, field: str
) -> None:
    async with client_for(model_server, sleeps) as client:
        with pytest.raises(ValidationError) as caught:
            await client.generate("hi", max_tokens=max_tokens, temperature=temperature)
    assert caught.value.field == field
    assert model_server.requests == []


async def test_a_truncated_reply_is_returned_and_marked_truncated(
    model_server: ModelServer, sleeps: Sleeps
) -> None:
    model_server.queue(truncated("The answer was cut"), truncated("The answer was cut"))
    async with client_for(model_server, sleeps) as client:
        got = await client.generate("long question", max_tokens=4, temperature=0)
        text = await client.generate_text("long question", max_tokens=4, temperature=0)
        assert client.statistics().truncated == 2
    assert (got.text, got.truncated, got.usage.finish_reason) == (
        "The answer was cut",
        True,
        "length",
    )
    assert text == "The answer was cut"


def test_a_generation_cannot_contradict_its_finish_reason() -> None:
    usage = Usage(model="m", finish_reason="length")
    with pytest.raises(ValidationError) as caught:
        Generation(text="x", usage=usage, truncated=False)
    assert caught.value.field == "truncated"


# -- OpenAIClient: unusable replies -----------------------------------------------------


@pytest.mark.parametrize(
    ("reply", "says"),
    [
        (malformed(), "is not valid JSON"),
        (Reply(body=[1, 2]), "is not a JSON object"),
        (Reply(body={"choices": []}), "has no choices"),
        (Reply(body={"choices": [{"text": "legacy"}]}), "has no choices[0].message"),
        (no_content(), "has no choices[0].message.content"),
        (answer("  \n"), "has an empty content"),
    ],
    ids=["not-json", "not-object", "no-choices", "no-message", "null-content", "empty"],
)
async def test_an_unusable_reply_is_a_non_retryable_error_naming_what_was_wrong(
    model_server: ModelServer, sleeps: Sleeps, reply: Reply, says: str
) -> None:
    model_server.queue(reply)
    async with client_for(model_server, sleeps) as client:
        with pytest.raises(InferenceError) as caught:
            await client.generate_text("q", max_tokens=5, temperature=0)
        assert client.statistics().failures == 1
    assert says in str(caught.value)
    assert isinstance(caught.value, jobledger.JobledgerError)
    assert (caught.value.retryable, len(model_server.requests)) == (False, 1)


# -- OpenAIClient: retries --------------------------------------------------------------


async def test_a_5xx_is_retried_with_backoff_then_succeeds(
    model_server: ModelServer, sleeps: Sleeps
) -> None:
    model_server.queue(http_error(500), http_error(503), answer("third time"))
    async with client_for(model_server, sleeps, backoff=0.25) as client:
        assert await client.generate_text("q", max_tokens=5, temperature=0) == "third time"
        assert (client.statistics().requests, client.statistics().retries) == (3, 2)
    assert sleeps.waits == [0.25, 0.5]
    assert len(model_server.requests) == 3


async def test_a_429_waits_as_long_as_retry_after_says(
    model_server: ModelServer, sleeps: Sleeps
) -> None:
    model_server.queue(http_error(429, "slow down", retry_after="3"), answer("ok"))
    async with client_for(model_server, sleeps) as client:
        assert await client.generate_text("q", max_tokens=5, temperature=0) == "ok"
    assert sleeps.waits == [3.0]


async def test_a_retry_after_beyond_max_backoff_waits_max_backoff_and_retries(
    model_server: ModelServer, sleeps: Sleeps
) -> None:
    # Regression: it raised at once without waiting, so the runner retried
    # the job about a second later, ignoring the server's Retry-After.
    model_server.queue(http_error(429, "quota", retry_after="120"), answer("ok"))
    async with client_for(model_server, sleeps, max_backoff=30) as client:
        assert await client.generate_text("q", max_tokens=5, temperature=0) == "ok"
    assert sleeps.waits == [30] and len(model_server.requests) == 2
    model_server.queue(*[http_error(429, "quota", retry_after="120")] * 2)
    async with client_for(model_server, sleeps, max_backoff=30, max_retries=1) as client:
        with pytest.raises(InferenceError) as caught:
            await client.generate_text("q", max_tokens=5, temperature=0)
    error = caught.value
    assert (error.retryable, error.status, error.retry_after) == (True, 429, 120.0)
    assert "quota" in str(error) and "after 2 tries" in str(error)
    assert sleeps.waits == [30, 30]


async def test_a_prompt_with_a_lone_surrogate_is_refused_before_sending(
    model_server: ModelServer, sleeps: Sleeps
) -> None:
    # Regression: httpx's JSON encoding raised an untyped UnicodeEncodeError.
    async with client_for(model_server, sleeps) as client:
        with pytest.raises(ValidationError) as caught:
            await client.generate("half a pair: \ud800", max_tokens=5, temperature=0)
    assert caught.value.field == "prompt" and "index 13" in str(caught.value)
    assert model_server.requests == []


async def test_a_reply_nested_too_deeply_is_a_typed_error_not_a_recursion_error(
    model_server: ModelServer, sleeps: Sleeps
) -> None:
    # Regression: json.loads raised RecursionError, which no caller expects.
    model_server.queue(malformed(b"[" * 100_000))
    model_server.queue(Reply(status=503, body=b"[" * 100_000), answer("ok"))
    async with client_for(model_server, sleeps) as client:
        with pytest.raises(InferenceError) as caught:
            await client.generate("q", max_tokens=5, temperature=0)
        assert not caught.value.retryable and "is not valid JSON" in str(caught.value)
        assert await client.generate_text("q", max_tokens=5, temperature=0) == "ok"
    assert sleeps.waits == [0.5]


async def test_when_the_tries_run_out_the_error_is_retryable_and_says_why(
    model_server: ModelServer, sleeps: Sleeps
) -> None:
    model_server.queue(*[http_error(502, "upstream down")] * 3)
    async with client_for(
        model_server, sleeps, max_retries=2, backoff=1, max_backoff=1.5
    ) as client:
        with pytest.raises(InferenceError) as caught:
            await client.generate_text("q", max_tokens=5, temperature=0)
    error = caught.value
    assert (error.retryable, error.status) == (True, 502)
    assert "HTTP 502" in str(error) and "upstream down" in str(error)
    assert "after 3 tries" in str(error)
    assert sleeps.waits == [1, 1.5]


@pytest.mark.parametrize("status", [400, 401, 403, 404, 422])
async def test_a_client_error_fails_at_once_and_never_shows_the_key(
    model_server: ModelServer, sleeps: Sleeps, status: int
) -> None:
    model_server.queue(http_error(status, "Incorrect API key provided"))
    async with client_for(model_server, sleeps, api_key="sk-secret-123") as client:
        assert "sk-secret" not in repr(client)
        with pytest.raises(InferenceError) as caught:
            await client.generate_text("q", max_tokens=5, temperature=0)
    error = caught.value
    assert (error.retryable, error.status, len(model_server.requests)) == (False, status, 1)
    assert f"HTTP {status}" in str(error) and "Incorrect API key provided" in str(error)
    assert "sk-secret" not in str(error)
    assert sleeps.waits == []


async def test_a_slow_server_times_out_as_a_retryable_error(
    model_server: ModelServer, sleeps: Sleeps
) -> None:
    model_server.queue(held())
    async with client_for(model_server, sleeps, timeout=0.2, max_retries=0) as client:
        with pytest.raises(InferenceError) as caught:
            await client.generate_text("q", max_tokens=5, temperature=0)
    assert caught.value.retryable
    assert "no reply within 0.2 s" in str(caught.value)
    assert isinstance(caught.value.__cause__, httpx.TimeoutException)


async def test_a_dropped_connection_is_retried(model_server: ModelServer, sleeps: Sleeps) -> None:
    model_server.queue(dropped(), answer("back"))
    async with client_for(model_server, sleeps) as client:
        assert await client.generate_text("q", max_tokens=5, temperature=0) == "back"
    assert len(model_server.requests) == 2 and sleeps.waits == [0.5]


async def test_no_server_at_all_is_a_retryable_error_after_the_retries(sleeps: Sleeps) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    async with OpenAIClient(
        base_url=f"http://127.0.0.1:{port}/v1", model="m", env={}, sleep=sleeps, max_retries=1
    ) as client:
        with pytest.raises(InferenceError) as caught:
            await client.generate_text("q", max_tokens=5, temperature=0)
    assert caught.value.retryable and caught.value.status is None
    assert "ConnectError" in str(caught.value) and "after 2 tries" in str(caught.value)
    assert sleeps.waits == [0.5]


async def test_a_closed_client_refuses_calls(model_server: ModelServer, sleeps: Sleeps) -> None:
    client = client_for(model_server, sleeps)
    await client.close()
    await client.close()
    with pytest.raises(InferenceError) as caught:
        await client.generate_text("q", max_tokens=5, temperature=0)
    assert not caught.value.retryable and "closed" in str(caught.value)


async def test_a_shared_http_client_is_left_open(model_server: ModelServer, sleeps: Sleeps) -> None:
    model_server.on("ping", answer("pong"))
    async with httpx.AsyncClient() as shared:
        async with client_for(model_server, sleeps, http_client=shared) as client:
            assert await client.generate_text("say ping", max_tokens=5, temperature=0) == "pong"
        assert not shared.is_closed
    borrowing = client_for(model_server, sleeps, http_client=shared)
    with pytest.raises(InferenceError) as caught:
        await borrowing.generate_text("say ping", max_tokens=5, temperature=0)
    assert not caught.value.retryable and "closed" in str(caught.value)


async def test_rules_match_the_prompt_before_the_queue(model_server: ModelServer) -> None:
    model_server.on("weather", answer("sunny")).queue(answer("first"), answer("second"))
    async with OpenAIClient(base_url=model_server.url, model="m", env={}) as client:
        got = [
            await client.generate_text(p, max_tokens=5, temperature=0)
            for p in ("a", "the weather?", "b")
        ]
    assert got == ["first", "sunny", "second"]
    assert [r.prompt for r in model_server.requests] == ["a", "the weather?", "b"]


def test_the_clients_fit_the_protocols() -> None:
    offline = OfflineClient()
    online = OpenAIClient(base_url="http://h/v1", model="m", env={})
    assert isinstance(offline, InferenceClient) and isinstance(offline, ExtractiveMethods)
    assert isinstance(online, InferenceClient) and not isinstance(online, ExtractiveMethods)
    assert (offline.name, offline.offline, online.offline) == ("jobledger-offline", True, False)
    asyncio.run(online.close())


# -- the runner and InferenceError ------------------------------------------------------


class Asking(JobWorker):
    """Asks the model for the job's prompt and returns the answer."""

    job_types = ("ask",)

    def __init__(self, client: InferenceClient) -> None:
        super().__init__()
        self.client = client

    async def execute(self, job: Job, ctx: JobContext) -> dict[str, Any]:
        text = await self.client.generate_text(job.params["prompt"], max_tokens=16, temperature=0)
        return {"text": text, "generator": self.client.name}


async def test_the_runner_retries_a_retryable_inference_error_and_not_the_others(
    db_path: Path, model_server: ModelServer, sleeps: Sleeps
) -> None:
    model_server.on("bad key", http_error(401, "no such key"))
    model_server.on("busy", http_error(503, "overloaded"))
    model_server.on("fine", answer("all good"))
    client = client_for(model_server, sleeps, max_retries=0)
    async with (
        client,
        jobledger.open(db_path, workers=[Asking(client)], clock=ManualClock()) as ledger,
    ):
        bad = await ledger.submit("ask", {"prompt": "bad key"}, max_retries=3)
        busy = await ledger.submit("ask", {"prompt": "busy"}, max_retries=3)
        fine = await ledger.submit("ask", {"prompt": "fine"}, max_retries=3)
        failed = await ledger.wait(bad.id, timeout=10)
        done = await ledger.wait(fine.id, timeout=10)

        async def busy_is_scheduled_for_retry() -> bool:
            return "job.retry_scheduled" in [e.type for e in await ledger.history(busy.id)]

        await eventually(busy_is_scheduled_for_retry)
    assert (failed.status, failed.attempt, failed.error_type) == ("failed", 1, "InferenceError")
    assert "HTTP 401" in (failed.error or "")
    assert (done.status, done.result) == ("completed", {"text": "all good", "generator": "m"})


# -- OfflineClient: generate_text -------------------------------------------------------

ARTICLE = """# Event sourcing

Event sourcing keeps every change as an event in an append-only log. The log is the
truth, and every state is derived from the log. Dr. Jane Smith of the University of
Cambridge argued that event sourcing always makes audits simpler.

Workers claim jobs from the log. A lease fences stale workers, so a job may run twice
only if its lease expires. According to the Apache Software Foundation, 73% of
projects keep logs.

Write to ops@example.com or read https://example.com/docs. The team met in Berlin on
March 3, 2024 with NASA and Acme Corp.
"""


async def test_offline_generate_text_is_a_labelled_extract_of_the_prompt() -> None:
    client = OfflineClient()
    prompt = "Logs are the truth. Logs keep every change. Cats sleep."
    text = await client.generate_text(prompt, max_tokens=100, temperature=0.9)
    assert text == OFFLINE_LABEL + "\nLogs are the truth. Logs keep every change. Cats sleep."
    got = await client.generate(prompt, max_tokens=4, temperature=0)
    assert got.text == OFFLINE_LABEL + "\nLogs are the truth."
    assert got.usage == Usage(
        prompt_tokens=10,
        completion_tokens=4,
        total_tokens=14,
        model="jobledger-offline",
        finish_reason="length",
    )
    assert got.truncated
    with pytest.raises(InferenceError) as caught:
        await client.generate_text(" \n ", max_tokens=4, temperature=0)
    assert not caught.value.retryable
    with pytest.raises(ValidationError):
        await client.generate_text("x", max_tokens=0, temperature=0)


# -- OfflineClient: the extractive methods ----------------------------------------------


def exacts(spans: list[Span]) -> list[str]:
    return [s.exact for s in spans]


def test_highlights_pick_density_per_2000_characters_of_the_best_sentences() -> None:
    client = OfflineClient()
    assert len(ARTICLE) == 563  # so density 10 asks for round(2.815) == 3
    assert exacts(client.highlights(ARTICLE, 10)) == [
        "Event sourcing keeps every change as an event in an append-only log.",
        "Dr. Jane Smith of the University of\nCambridge argued that event sourcing always"
        " makes audits simpler.",
        "Workers claim jobs from the log.",
    ]
    assert exacts(client.highlights(ARTICLE, 0.1)) == [
        "Event sourcing keeps every change as an event in an append-only log."
    ]
    assert client.highlights(ARTICLE, 0) == []
    assert client.highlights("", 5) == []
    assert len(client.highlights(ARTICLE, 1000)) == 8  # every sentence but the heading
    for bad in (-1, math.nan, "5"):
        with pytest.raises(ValidationError) as caught:
            client.highlights(ARTICLE, bad)  # type: ignore[arg-type]
        assert caught.value.field == "density"


def test_sentences_do_not_end_at_abbreviations_or_initials() -> None:
    text = "Dr. Smith met J. R. Tolkien, e.g. at noon. Then they left!"
    spans = OfflineClient().highlights(text, 1000)
    assert exacts(spans) == ["Dr. Smith met J. R. Tolkien, e.g. at noon.", "Then they left!"]


def test_tags_label_sentences_with_their_best_category() -> None:
    categories = {
        "Storage": ["log", "append-only"],
        "Claim": ["re:\\d+%", "argued"],
        "Work": [],
        "Lease": ["lease"],
    }
    tagged = [(s.exact, c) for s, c in OfflineClient().tags(ARTICLE, categories)]
    assert tagged == [
        ("Event sourcing keeps every change as an event in an append-only log.", "Storage"),
        ("The log is the\ntruth, and every state is derived from the log.", "Storage"),
        (
            "Dr. Jane Smith of the University of\nCambridge argued that event sourcing always"
            " makes audits simpler.",
            "Claim",
        ),
        ("Workers claim jobs from the log.", "Storage"),
        (
            "A lease fences stale workers, so a job may run twice\nonly if its lease expires.",
            "Lease",
        ),
        ("According to the Apache Software Foundation, 73% of\nprojects keep logs.", "Storage"),
    ]
    # "73% of projects keep logs" hits Claim and Storage once each: the first given wins.
    claim_first = {"Claim": ["re:\\d+%"], "Storage": ["log"]}
    assert OfflineClient().tags(ARTICLE, claim_first)[-1][1] == "Claim"
    work = OfflineClient().tags("Work hard. Rest.", {"Work": []})
    assert [(s.exact, c) for s, c in work] == [("Work hard.", "Work")]


@pytest.mark.parametrize(
    "categories",
    [{"A": "log"}, {"A": ["re:("]}, {"": ["x"]}, {"A": [""]}, ["A"]],
    ids=["string-keywords", "bad-regex", "empty-name", "empty-keyword", "not-a-mapping"],
)
def test_malformed_categories_are_a_validation_error(categories: Any) -> None:
    with pytest.raises(ValidationError):
        OfflineClient().tags(ARTICLE, categories)


def test_references_find_the_requested_entity_types_named_as_requested() -> None:
    types = ["Person", "organisation", "Place", "Date", "URL", "email", "Vehicle"]
    found = [(s.exact, t) for s, t in OfflineClient().references(ARTICLE, types)]
    assert found == [
        ("Dr. Jane Smith", "Person"),
        ("University of\nCambridge", "organisation"),
        ("Apache Software Foundation", "organisation"),
        ("ops@example.com", "email"),
        ("https://example.com/docs", "URL"),
        ("Berlin", "Place"),
        ("March 3, 2024", "Date"),
        ("NASA", "organisation"),
        ("Acme Corp", "organisation"),
    ]
    only_dates = OfflineClient().references(ARTICLE, ["date"])
    assert [(s.exact, t) for s, t in only_dates] == [("March 3, 2024", "date")]
    assert OfflineClient().references(ARTICLE, ["Vehicle"]) == []
    with pytest.raises(ValidationError):
        OfflineClient().references(ARTICLE, "Person")


def test_references_survive_a_capitalised_connector_before_a_lowercase_word() -> None:
    # Regression: "Of course" made a run of one connector; popping it left
    # an empty run and references() raised IndexError.
    text = "Of course, Ada Lovelace met Charles Babbage in London."
    found = OfflineClient().references(text, ["Person", "Location"])
    assert [(s.exact, t) for s, t in found] == [
        ("Ada Lovelace", "Person"),
        ("Charles Babbage", "Person"),
        ("London", "Location"),
    ]


def test_comments_are_templated_on_the_best_sentences_with_the_tone() -> None:
    client = OfflineClient()
    (only,) = client.comments(ARTICLE, "How do audits work?", "technical")
    assert only[0].exact.startswith("Dr. Jane Smith of the University")
    assert only[1] == (
        "Key statement on “event”, “sourcing” and “argued” (“event”: 4 occurrences in the text)."
        " It bears on your instructions (“audits”)."
    )
    (plain,) = client.comments(ARTICLE)
    assert plain[0].exact == "Event sourcing keeps every change as an event in an append-only log."
    assert (
        plain[1]
        == "This sentence is about “log”, “event” and “sourcing”; the text mentions “log” 5 times."
    )
    assert len(client.comments(ARTICLE, density=20)) == 6  # round(20 * 563 / 2000)


def test_assessments_pick_sentences_that_make_checkable_claims() -> None:
    found = OfflineClient().assessments(ARTICLE, None, "critical", "en-US", density=20)
    assert [(s.exact, a) for s, a in found] == [
        (
            "Event sourcing keeps every change as an event in an append-only log.",
            "Weakness: the claim is absolute (“every”); check that the text supports it"
            " without exception.",
        ),
        (
            "The log is the\ntruth, and every state is derived from the log.",
            "Weakness: the claim is absolute (“every”); check that the text supports it"
            " without exception.",
        ),
        (
            "Dr. Jane Smith of the University of\nCambridge argued that event sourcing always"
            " makes audits simpler.",
            "Weakness: the claim is absolute (“always”); check that the text supports it"
            " without exception.",
        ),
        (
            "A lease fences stale workers, so a job may run twice\nonly if its lease expires.",
            "Weakness: the claim is hedged (“may”); the text does not commit to it.",
        ),
        (
            "According to the Apache Software Foundation, 73% of\nprojects keep logs.",
            "Weakness: the claim rests on a cited source; check that the source says this.",
        ),
        (
            "The team met in Berlin on\nMarch 3, 2024 with NASA and Acme Corp.",
            "Weakness: the claim rests on a figure (“3,”); check its source and what it counts.",
        ),
    ]
    (first,) = OfflineClient().assessments("Figures show 12% growth.", tone="balanced")
    assert first[1] == "The claim rests on a figure (“12%”); check its source and what it counts."


def test_generate_document_is_a_labelled_markdown_extract() -> None:
    document = OfflineClient().generate_document("Logs", "leases and audits", ARTICLE, "en")
    assert document == (
        "# Logs\n"
        "\n"
        "> Drafted offline by jobledger-offline from sentences of the source text;"
        " no model wrote it.\n"
        "> Prompt: leases and audits\n"
        "\n"
        "## Summary\n"
        "\n"
        "Event sourcing keeps every change as an event in an append-only log."
        " Dr. Jane Smith of the University of Cambridge argued that event sourcing always"
        " makes audits simpler."
        " A lease fences stale workers, so a job may run twice only if its lease expires.\n"
        "\n"
        "## Key points\n"
        "\n"
        "- The log is the truth, and every state is derived from the log.\n"
        "- Workers claim jobs from the log.\n"
        "- According to the Apache Software Foundation, 73% of projects keep logs.\n"
        "- Write to ops@example.com or read https://example.com/docs.\n"
        "- The team met in Berlin on March 3, 2024 with NASA and Acme Corp.\n"
        "\n"
        "## Key terms\n"
        "\n"
        "log, event, sourcing, jobs, keeps, lease, workers, according\n"
    )
    empty = OfflineClient().generate_document("", None, "   ")
    assert empty == (
        "# Untitled\n\n> Drafted offline by jobledger-offline from sentences of the source"
        " text; no model wrote it.\n\nThe source text has no sentences to draw on.\n"
    )


TEXTS = st.lists(
    st.sampled_from(
        [
            *list("abcXYZ É.!?,;:-#*>@/%'’\"()\n\t0123456789"),
            "Dr.",
            " the ",
            " in ",
            "Inc",
            " of ",
            "http://x.io",
            "a@b.co",
            "May 5, 2024",
            "\n\n",
        ]
    ),
    max_size=120,
).map("".join)


@settings(max_examples=150, deadline=None)
@given(text=TEXTS, density=st.floats(min_value=0, max_value=50))
def test_every_span_is_exact_in_order_and_the_same_every_time(text: str, density: float) -> None:
    client = OfflineClient()
    categories = {"A": ["abc", "re:X+"], "B": []}
    types = ["Person", "Organization", "Location", "Date", "URL", "Email"]

    def run() -> list[list[Span]]:
        return [
            client.highlights(text, density),
            [s for s, _ in client.tags(text, categories)],
            [s for s, _ in client.references(text, types)],
            [s for s, _ in client.comments(text, "abc", "scholarly", density=density)],
            [s for s, _ in client.assessments(text, density=density)],
        ]

    first = run()
    assert run() == first
    for spans in first:
        for span in spans:
            assert 0 <= span.start < span.end <= len(text)
            assert text[span.start : span.end] == span.exact
            assert span.exact == span.exact.strip()
        assert [s.start for s in spans] == sorted(s.start for s in spans)
        assert all(a.end <= b.start for a, b in itertools.pairwise(spans))
    document = client.generate_document("T", "abc", text)
    assert document.startswith("# T\n") and document == client.generate_document("T", "abc", text)


CONNECTORS = ["Of", "De", "Del", "Der", "Van", "Von", "Da", "Di", "Du", "La", "Le", "Al", "Bin"]


@settings(max_examples=100, deadline=None)
@given(connector=st.sampled_from(CONNECTORS), rest=TEXTS)
def test_references_never_raise_on_a_text_opening_with_a_connector(
    connector: str, rest: str
) -> None:
    types = ["Person", "Organization", "Location"]
    for text in (f"{connector} course {rest}", f"{rest} {connector} la {rest}", connector):
        for span, _ in OfflineClient().references(text, types):
            assert text[span.start : span.end] == span.exact


def test_the_fake_server_can_echo_for_examples() -> None:
    with ModelServer(default=echo) as server:

        async def ask() -> str:
            async with OpenAIClient(base_url=server.url, model="any", env={}) as client:
                return await client.generate_text("hello", max_tokens=5, temperature=0)

        assert asyncio.run(ask()) == "echo: hello"
