"""The HTTP client every external ticket adapter uses: one place for TLS, timeouts, rate limits and errors.

A ticket system that says 429 (or 503) with ``Retry-After`` is waited for, up to ``max_wait`` seconds in
total; one that does not answer, or keeps refusing for longer, raises ``TicketSystemUnavailable`` so the
outbox keeps the event and retries later. 401/403 and other 4xx raise ``TicketSystemRefused`` carrying the
system's own message, 404 raises ``TicketNotFound``. No request or response body, header or credential is
ever put into an error message: only the method, the path and the system's error text (redacted).
"""

from __future__ import annotations

import email.utils
import logging
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx

from remotehands import redaction
from remotehands.errors import TicketNotFound, TicketSystemRefused, TicketSystemUnavailable
from remotehands.numbers import ascii_int

log = logging.getLogger(__name__)

RETRY_STATUSES = frozenset({429, 502, 503, 504})


@dataclass
class HttpSettings:
    """How to reach one ticket system. ``auth`` holds resolved header values; it is never logged."""

    base_url: str
    auth: Mapping[str, str] = field(default_factory=dict, repr=False)
    basic: tuple[str, str] | None = field(default=None, repr=False)
    verify: bool | str = True  # a CA bundle path pins the system's CA; False only by explicit setting
    timeout: float = 10.0
    max_wait: float = 60.0  # total seconds spent honouring Retry-After within one call
    max_attempts: int = 5


def retry_after_seconds(value: str | None, *, default: float = 1.0, now: datetime | None = None) -> float:
    """Seconds to wait from a ``Retry-After`` header: delta-seconds or an HTTP date; ``default`` if absent."""
    if not value:
        return default
    value = value.strip()
    seconds = ascii_int(value, max_digits=9)
    if seconds is not None:
        return float(seconds)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return default
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


class TicketHttp:
    """A small synchronous client bound to one ticket system. Thread-safe (httpx.Client is)."""

    def __init__(
        self,
        system: str,
        settings: HttpSettings,
        *,
        error_text: Callable[[httpx.Response], str] | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.system = system
        self.settings = settings
        self._error_text = error_text or _default_error_text
        self._sleep = sleep
        auth = httpx.BasicAuth(*settings.basic) if settings.basic else None
        self._client = httpx.Client(
            base_url=settings.base_url.rstrip("/"),
            headers=dict(settings.auth),
            auth=auth,
            verify=settings.verify,
            timeout=settings.timeout,
            follow_redirects=False,
        )
        self.requests_sent = 0  # for tests and metrics: how many HTTP requests this client made

    def close(self) -> None:
        self._client.close()

    def request(
        self,
        method: str,
        path: str,
        *,
        what: str,
        ok: tuple[int, ...] = (200, 201, 204),
        **kwargs: Any,
    ) -> httpx.Response:
        """Send one call, honouring rate limits. ``what`` names the call in errors ("read ticket ITSM-4").

        Raises ``TicketNotFound`` (404), ``TicketSystemRefused`` (other 4xx), ``TicketSystemUnavailable``
        (no answer, 5xx, or rate-limited past ``max_wait``)."""
        waited = 0.0
        for attempt in range(1, self.settings.max_attempts + 1):
            try:
                self.requests_sent += 1
                response = self._client.request(method, path, **kwargs)
            except httpx.HTTPError as exc:
                raise TicketSystemUnavailable(
                    f"{self.system} did not answer ({what}): {type(exc).__name__}",
                    fix=f"check that {self.settings.base_url} is reachable; the outbox retries",
                ) from None
            if response.status_code in ok:
                return response
            if response.status_code in RETRY_STATUSES:
                delay = retry_after_seconds(response.headers.get("Retry-After"), default=2.0 ** (attempt - 1))
                if attempt < self.settings.max_attempts and waited + delay <= self.settings.max_wait:
                    log.info(
                        "%s answered %s to %s; waiting %.1f s", self.system, response.status_code, what, delay
                    )
                    self._sleep(delay)
                    waited += delay
                    continue
                raise TicketSystemUnavailable(
                    f"{self.system} answered {response.status_code} to {what} after {attempt} attempt(s) "
                    f"and {waited:.0f} s of waiting",
                    fix="the outbox retries later; check the system's rate limits or health",
                )
            text = redaction.redact(self._error_text(response))[:300]
            if response.status_code == 404:
                raise TicketNotFound(f"{self.system}: not found ({what}): {text}")
            if response.status_code >= 500:
                raise TicketSystemUnavailable(
                    f"{self.system} failed with {response.status_code} ({what}): {text}",
                    fix="the outbox retries later",
                )
            hint = (
                "check the credentials reference and the account's permissions"
                if response.status_code in (401, 403)
                else "check the adapter settings (field mapping, status names)"
            )
            raise TicketSystemRefused(
                f"{self.system} refused {what} with {response.status_code}: {text}", fix=hint
            )
        raise TicketSystemUnavailable(f"{self.system}: {what} gave up", fix="the outbox retries later")

    def json(self, method: str, path: str, *, what: str, **kwargs: Any) -> Any:
        """``request`` and decode the JSON body; a body that is not JSON is ``TicketSystemRefused``."""
        response = self.request(method, path, what=what, **kwargs)
        if response.status_code == 204:
            return {}
        return self._decode(response, what)

    def pages(
        self,
        path: str,
        *,
        what: str,
        items: Callable[[Any], list[Any]],
        next_request: Callable[[Any, httpx.Response], tuple[str, dict[str, Any]] | None],
        params: dict[str, Any] | None = None,
        max_pages: int = 1000,
    ) -> Iterator[Any]:
        """Yield every item of a paginated listing. ``next_request(body, response)`` returns the next
        (path, params) or None; each vendor encodes "next page" its own way."""
        current: tuple[str, dict[str, Any]] | None = (path, dict(params or {}))
        for _ in range(max_pages):
            if current is None:
                return
            response = self.request("GET", current[0], what=what, params=current[1])
            body = self._decode(response, what)
            yield from items(body)
            current = next_request(body, response)
        raise TicketSystemRefused(
            f"{self.system}: {what} has more than {max_pages} pages", fix="this listing is unexpectedly large"
        )

    def follow(self, url: str) -> tuple[str, dict[str, Any]]:
        """A next-page URL the system handed back, as the (url, params) to request: its path and query
        on the configured base URL's scheme and host, so credentials go nowhere else. Repeated query
        parameters keep their last value."""
        target = httpx.URL(url)
        rooted = httpx.URL(self.settings.base_url).copy_with(path=target.path, query=None)
        return str(rooted), dict(target.params)  # httpx replaces a URL's query with ``params``

    def _decode(self, response: httpx.Response, what: str) -> Any:
        """The JSON body of an answer ({} when it is empty); a body that is not JSON is
        ``TicketSystemRefused``: the URL is not the system's API."""
        if not response.content:
            return {}
        try:
            return response.json()
        except ValueError:
            raise TicketSystemRefused(
                f"{self.system} answered {what} with a body that is not JSON",
                fix=f"check that {self.settings.base_url} is the API root of {self.system}",
            ) from None


def _default_error_text(response: httpx.Response) -> str:
    """A system's words from an error body: the first of ``errorMessages``, ``errors``, ``error``,
    ``message``, ``detail`` in a JSON object, the texts of (the first items of) a JSON list, a JSON string,
    or the start of a body that is not JSON; the reason phrase when none says anything. Any JSON body is
    fine; the caller redacts and shortens the text."""
    try:
        body = response.json()
    except ValueError:
        return response.text.strip()[:200] or response.reason_phrase
    if isinstance(body, Mapping):
        for key in ("errorMessages", "errors", "error", "message", "detail"):
            if body.get(key):
                return str(body[key])
        return response.reason_phrase
    if isinstance(body, list):
        texts = [str(item) for item in body[:10] if isinstance(item, str | int | float) and str(item).strip()]
        return "; ".join(t.strip() for t in texts) or response.reason_phrase
    if isinstance(body, str):
        return body.strip() or response.reason_phrase
    return response.reason_phrase
