"""Webhook signature schemes, checked on the raw body before anything parses it.

    jira      X-Hub-Signature: sha256=<hex HMAC-SHA256(secret, body)>; the body's ``timestamp`` (epoch ms,
              covered by the signature) is the time checked; delivery id X-Atlassian-Webhook-Identifier
    zendesk   X-Zendesk-Webhook-Signature: base64 HMAC-SHA256(secret, timestamp + body) with
              X-Zendesk-Webhook-Signature-Timestamp (ISO 8601); delivery id X-Zendesk-Webhook-Invocation-Id
    generic   for builtin, RT and ServiceNow, whose webhooks the operator writes (an RT scrip, a ServiceNow
              business rule): X-RH-Timestamp (epoch seconds), X-RH-Delivery (unique per delivery) and
              X-RH-Signature: sha256=<hex HMAC-SHA256(secret, "<timestamp>." + body)>

A timestamp further than ``tolerance`` seconds from now (either way) is refused, so a captured delivery
cannot be replayed later. Every refusal is ``NotAuthenticated`` with the reason, never the secret.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from remotehands.errors import NotAuthenticated
from remotehands.numbers import ascii_int


@dataclass(frozen=True)
class Verified:
    delivery_id: str
    sent_at: datetime


Scheme = Callable[[Mapping[str, str], bytes, bytes, datetime, int], Verified]


def sign_generic(secret: bytes, body: bytes, timestamp: int) -> str:
    """The X-RH-Signature value for ``body`` sent at ``timestamp`` (for senders and tests)."""
    return "sha256=" + hmac.new(secret, f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def sign_jira(secret: bytes, body: bytes) -> str:
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


def sign_zendesk(secret: bytes, body: bytes, timestamp: str) -> str:
    return base64.b64encode(hmac.new(secret, timestamp.encode() + body, hashlib.sha256).digest()).decode()


def _header(headers: Mapping[str, str], name: str) -> str:
    value = headers.get(name) or headers.get(name.lower())
    if not value:
        raise NotAuthenticated(
            f"header {name} is missing", fix="configure the webhook to sign its deliveries"
        )
    return value


def _check_time(sent: datetime, now: datetime, tolerance: int) -> None:
    skew = abs((now - sent).total_seconds())
    if skew > tolerance:
        raise NotAuthenticated(
            f"timestamp {sent.isoformat()} is {skew:.0f} s from now, more than the {tolerance} s allowed",
            fix="a delivery is accepted only when fresh; check the sender's clock, or re-send it",
        )


def _match(expected: str, given: str) -> None:
    if not hmac.compare_digest(expected.encode(), given.strip().encode()):
        raise NotAuthenticated(
            "signature does not match the body", fix="check the webhook secret on both sides"
        )


def verify_generic(
    headers: Mapping[str, str], body: bytes, secret: bytes, now: datetime, tolerance: int
) -> Verified:
    stamp = ascii_int(_header(headers, "X-RH-Timestamp"), max_digits=11)
    if stamp is None:
        raise NotAuthenticated("header X-RH-Timestamp is not epoch seconds", fix="send int(time.time())")
    _match(sign_generic(secret, body, stamp), _header(headers, "X-RH-Signature"))
    sent = datetime.fromtimestamp(stamp, UTC)
    _check_time(sent, now, tolerance)
    return Verified(_header(headers, "X-RH-Delivery")[:128], sent)


def verify_jira(
    headers: Mapping[str, str], body: bytes, secret: bytes, now: datetime, tolerance: int
) -> Verified:
    _match(sign_jira(secret, body), _header(headers, "X-Hub-Signature"))
    try:
        millis = ascii_int(json.loads(body)["timestamp"], max_digits=14)
        if millis is None:
            raise ValueError("timestamp")
        sent = datetime.fromtimestamp(millis / 1000, UTC)
    except (ValueError, KeyError, TypeError, OverflowError):
        raise NotAuthenticated(
            "the Jira body has no numeric 'timestamp'", fix="send Jira's standard webhook body"
        ) from None
    _check_time(sent, now, tolerance)
    delivery = headers.get("X-Atlassian-Webhook-Identifier") or headers.get("x-atlassian-webhook-identifier")
    return Verified((delivery or "sha256:" + hashlib.sha256(body).hexdigest())[:128], sent)


def verify_zendesk(
    headers: Mapping[str, str], body: bytes, secret: bytes, now: datetime, tolerance: int
) -> Verified:
    stamp = _header(headers, "X-Zendesk-Webhook-Signature-Timestamp")
    _match(sign_zendesk(secret, body, stamp), _header(headers, "X-Zendesk-Webhook-Signature"))
    try:
        sent = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    except ValueError:
        raise NotAuthenticated(
            "header X-Zendesk-Webhook-Signature-Timestamp is not ISO 8601", fix="send Zendesk's header"
        ) from None
    if sent.tzinfo is None:
        sent = sent.replace(tzinfo=UTC)
    _check_time(sent, now, tolerance)
    return Verified(_header(headers, "X-Zendesk-Webhook-Invocation-Id")[:128], sent)


SCHEMES: dict[str, Scheme] = {
    "jira": verify_jira,
    "zendesk": verify_zendesk,
    "generic": verify_generic,
}


def scheme_for(kind: str) -> Scheme:
    """The scheme a ticket system of ``kind`` signs with (builtin, RT and ServiceNow: generic)."""
    return SCHEMES.get(kind, verify_generic)
