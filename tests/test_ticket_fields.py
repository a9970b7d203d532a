"""The shared parsing of mapped ticket fields (``remotehands.tickets.fields``), and the shared HTTP client's
handling of error bodies and page bodies that are not what it expects, at the wire."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from remotehands.errors import ConfigError, InvalidRequest, TicketNotFound, TicketSystemRefused
from remotehands.lab.ticket_sims.harness import ServerThread
from remotehands.tickets.base import Severity, TicketStatus, TicketType
from remotehands.tickets.fields import (
    is_sensitive,
    mapped,
    mapped_severity,
    mapped_text,
    mapped_type,
    our_status,
    parse_severity,
    parse_time,
    plain,
    truthy,
)
from remotehands.tickets.http import HttpSettings, TicketHttp

# -- plain and mapped values --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ({"self": "https://jira/option/1", "value": "sev2", "id": "1"}, "sev2"),  # Jira select option
        ({"self": "https://jira/priority/2", "name": "High", "id": "2"}, "High"),  # Jira priority
        ({"accountId": "5b10", "displayName": "Alice Smith"}, "Alice Smith"),  # Jira Cloud user
        ({"value": {"value": "nested"}}, "nested"),  # a cascading select's parent
        ({"display_value": "2 - High", "value": "2"}, "2"),  # ServiceNow column: the stored value
        (
            {"display_value": "Acme Corp", "value": "4f2a", "link": "https://sn/core_company/4f2a"},
            "Acme Corp",
        ),
        ({"value": "4f2a", "link": "https://sn/core_company/4f2a"}, "4f2a"),  # a reference without a name
        ([{"value": "a"}, {"value": "b"}, "c"], ["a", "b", "c"]),  # multi-select
        ({"id": 7, "size": 3}, {"id": 7, "size": 3}),  # nothing to unwrap
        ("text", "text"),
        (3, 3),
        (None, None),
    ],
)
def test_plain_unwraps_what_systems_wrap_values_in(raw: Any, expected: Any) -> None:
    assert plain(raw) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("acme", "acme"),
        (["first", "second"], "first"),
        (0, 0),
        (False, False),
        ([], None),
        ("", None),
        ("   ", None),
        ({}, None),
        (None, None),
    ],
)
def test_mapped_takes_the_first_value_and_treats_empty_as_unset(value: Any, expected: Any) -> None:
    assert mapped({"f": value}, "f") == expected


def test_an_unmapped_or_missing_field_has_no_value() -> None:
    values = {"f": "set", "": "by an empty name"}
    assert mapped(values, None) is None
    assert mapped(values, "") is None
    assert mapped(values, "other") is None


def test_mapped_text_is_stripped_text_or_none() -> None:
    values = {"customer": "  Acme Corp \n", "blank": " ", "number": 42, "many": [" x ", "y"]}
    assert mapped_text(values, "customer") == "Acme Corp"
    assert mapped_text(values, "number") == "42"
    assert mapped_text(values, "many") == "x"
    assert mapped_text(values, "blank") is None
    assert mapped_text(values, None) is None


# -- severity -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("sev1", 1),
        ("Sev 2", 2),
        ("SEV_3", 3),
        ("sev-4", 4),
        ("severity 5", 5),
        ("  3 ", 3),
        ("02", 2),
        ("2 - High", 2),
        ("1 Critical", 1),
        (4, 4),
    ],
)
def test_severity_forms_that_are_read(value: Any, expected: int) -> None:
    assert parse_severity(value, "sevfield") == Severity(expected)


@pytest.mark.parametrize("value", ["urgent", "sev0", "sev6", "6", "12", "sev 2x", "0", "", None, True, -1])
def test_anything_else_is_not_a_severity_and_names_the_field(value: Any) -> None:
    with pytest.raises(InvalidRequest, match="customfield_10099") as caught:
        parse_severity(value, "customfield_10099")
    assert "sev1" in str(caught.value)  # the fix says what is accepted


def test_mapped_severity_is_none_when_the_field_is_unset() -> None:
    values = {"sev": ["Sev 2", "sev4"], "empty": "", "blank": "  ", "none": None, "bad": "whenever"}
    assert mapped_severity(values, "sev") == Severity.OUTAGE_ONE  # the first of a multi-value field
    for field in ("empty", "blank", "none", "missing", None):
        assert mapped_severity(values, field) is None
    with pytest.raises(InvalidRequest, match="bad"):
        mapped_severity(values, "bad")


# -- ticket type ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("remote-hands", TicketType.REMOTE_HANDS),
        ("Config Change", TicketType.CONFIG_CHANGE),
        ("config_change", TicketType.CONFIG_CHANGE),
        ("  Environment   Setup ", TicketType.ENVIRONMENT_SETUP),
        (["MONITORING-ALERT"], TicketType.MONITORING_ALERT),
        ("", TicketType.REMOTE_HANDS),
        (None, TicketType.REMOTE_HANDS),
    ],
)
def test_ticket_types_are_read_loosely(value: Any, expected: TicketType) -> None:
    assert mapped_type({"kind": value}, "kind") == expected


def test_an_unmapped_type_field_means_remote_hands() -> None:
    assert mapped_type({"kind": "plumbing"}, None) == TicketType.REMOTE_HANDS


def test_an_unknown_type_names_the_field_and_the_types() -> None:
    with pytest.raises(InvalidRequest, match="u_rh_type") as caught:
        mapped_type({"u_rh_type": "plumbing"}, "u_rh_type")
    assert "plumbing" in str(caught.value) and "config-change" in str(caught.value)


# -- sensitive flags ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value", [True, 1, 2.5, "yes", " Y ", "TRUE", "1", "on", "Sensitive", ["no", "yes"], [True]]
)
def test_flags_that_say_yes(value: Any) -> None:
    assert truthy(value) is True


@pytest.mark.parametrize("value", [False, 0, 0.0, "no", "false", "0", "off", "", None, [], ["no"], {"a": 1}])
def test_flags_that_say_no(value: Any) -> None:
    assert truthy(value) is False


def test_sensitive_by_field_or_by_tag() -> None:
    assert is_sensitive({"secret": "yes"}, "secret") is True
    assert is_sensitive({"secret": "no"}, "secret") is False
    assert is_sensitive({"secret": "yes"}, None) is False  # an unmapped field says nothing
    assert is_sensitive({"secret": "no"}, "secret", ["mac", "SENSITIVE"]) is True
    assert is_sensitive({}, "secret", ["mac", "sensitive-ish"]) is False
    assert is_sensitive({}, "secret", None) is False


# -- times and status keys ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2024-05-01T10:00:00.000+0000", datetime(2024, 5, 1, 10, tzinfo=UTC)),  # Jira
        ("2024-05-01T10:00:00Z", datetime(2024, 5, 1, 10, tzinfo=UTC)),  # Zendesk, RT
        ("2024-05-01T12:00:00+02:00", datetime(2024, 5, 1, 10, tzinfo=UTC)),
        ("2024-05-01T10:00:00", datetime(2024, 5, 1, 10, tzinfo=UTC)),  # no offset: UTC
    ],
)
def test_times_are_aware(value: str, expected: datetime) -> None:
    parsed = parse_time(value)
    assert parsed == expected
    assert parsed is not None and parsed.utcoffset() is not None


@pytest.mark.parametrize(
    "value", ["", "yesterday", "2024-13-01T00:00:00Z", None, 1714557600, {"iso8601": "x"}]
)
def test_what_is_not_a_time_is_none(value: Any) -> None:
    assert parse_time(value) is None


def test_time_parsing_keeps_the_offset() -> None:
    parsed = parse_time("2024-05-01T10:00:00-05:00")
    assert parsed is not None and parsed.utcoffset() == timedelta(hours=-5)


def test_status_keys_are_our_statuses() -> None:
    assert our_status("jsm", "in-progress") is TicketStatus.IN_PROGRESS
    with pytest.raises(ConfigError, match=r"ticket_systems\.jsm\.statuses: 'doing'") as caught:
        our_status("jsm", "doing")
    assert "needs-attention" in str(caught.value)


# -- the shared HTTP client, at the wire --------------------------------------------------------------

ERROR_BODIES: dict[str, Any] = {
    "list": ["Status 'parked' isn't a valid status", "Ticket 7: nothing changed"],
    "nested-list": [{"a": 1}, ["b"]],
    "string": "  maintenance window  ",
    "number": 42,
    "null": None,
    "object": {"message": "Field 'u_x' is read-only"},
    "empty-object": {},
}


async def error(request: Request) -> Response:
    return JSONResponse(ERROR_BODIES[request.path_params["kind"]], status_code=400)


async def missing(request: Request) -> Response:
    return JSONResponse(["no such ticket"], status_code=404)


async def page(request: Request) -> Response:
    """Page 1 is JSON and points at page 2; page 2 is what a login proxy serves: HTML."""
    if request.query_params.get("page", "1") == "1":
        return JSONResponse({"items": [1, 2], "next": 2})
    return PlainTextResponse("<html><body>Please log in</body></html>", media_type="text/html")


@pytest.fixture(scope="module")
def tiny() -> Iterator[str]:
    app = Starlette(routes=[Route("/error/{kind}", error), Route("/missing", missing), Route("/pages", page)])
    server = ServerThread(app).start()
    yield server.url
    server.stop()


@pytest.fixture
def client(tiny: str) -> Iterator[TicketHttp]:
    http = TicketHttp("tiny", HttpSettings(base_url=tiny, timeout=5.0), sleep=lambda _s: None)
    yield http
    http.close()


@pytest.mark.parametrize(
    ("kind", "said"),
    [
        ("list", "Status 'parked' isn't a valid status; Ticket 7: nothing changed"),
        ("nested-list", ": Bad Request"),
        ("string", ": maintenance window"),
        ("number", ": Bad Request"),
        ("null", ": Bad Request"),
        ("object", "Field 'u_x' is read-only"),
        ("empty-object", ": Bad Request"),
    ],
)
def test_any_json_error_body_gives_a_short_text(client: TicketHttp, kind: str, said: str) -> None:
    with pytest.raises(TicketSystemRefused) as caught:
        client.json("GET", f"/error/{kind}", what="read ticket 7")
    message = caught.value.message
    assert message.startswith("tiny refused read ticket 7 with 400")
    assert message.endswith(said)


def test_a_json_list_on_a_404_is_not_found(client: TicketHttp) -> None:
    with pytest.raises(TicketNotFound, match="no such ticket"):
        client.json("GET", "/missing", what="read ticket 8")


def test_a_page_that_is_not_json_is_refused(client: TicketHttp) -> None:
    seen: list[Any] = []

    def items(body: Any) -> list[Any]:
        return list(body["items"])

    def next_request(body: Any, _response: Any) -> tuple[str, dict[str, Any]] | None:
        return ("/pages", {"page": body["next"]}) if body.get("next") else None

    with pytest.raises(TicketSystemRefused, match="read the listing with a body that is not JSON"):
        for item in client.pages("/pages", what="read the listing", items=items, next_request=next_request):
            seen.append(item)
    assert seen == [1, 2]  # the first page was read before the second one failed
    assert client.requests_sent == 2


def test_a_next_link_is_followed_on_the_configured_host_only() -> None:
    http = TicketHttp("rt", HttpSettings(base_url="http://127.0.0.1:9/rt/REST/2.0/"))
    try:
        url, params = http.follow(
            "https://elsewhere.example:8443/rt/REST/2.0/ticket/1/history?page=3&per_page=100"
        )
    finally:
        http.close()
    assert url == "http://127.0.0.1:9/rt/REST/2.0/ticket/1/history"
    assert params == {"page": "3", "per_page": "100"}
