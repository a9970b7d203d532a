"""The part of the Junos configuration schema the lab's SRX accepts, and how Junos reads a CLI line.

A configuration statement is kept as its display-set path without the leading ``set`` (``security
address-book global address web 198.51.100.20/32``). ``parse_set`` checks a path against ``STATEMENTS`` and
returns its canonical form (quotes where Junos shows them) or the index of the first word no statement
accepts, which is where Junos puts its caret.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/-]{0,62}$")
_PHYSICAL = r"(?:(?:ge|xe|et|fe)-\d{1,2}/\d{1,2}/\d{1,2}|lo0|irb|fxp0|ae\d{1,2}|reth\d{1,2})"
_INTERFACE = re.compile(rf"^{_PHYSICAL}$")
_LOGICAL = re.compile(rf"^{_PHYSICAL}\.\d{{1,5}}$")
_PORTS = re.compile(r"^(\d{1,5})(?:-(\d{1,5}))?$")
_NEEDS_QUOTES = re.compile(r'[\s;{}#"]|^$')


@dataclass(frozen=True)
class Token:
    """One word of a CLI line: its text without quotes, where it starts in the line, whether it was quoted."""

    text: str
    start: int
    quoted: bool = False


def tokenize(line: str) -> list[Token]:
    """Split ``line`` the way the Junos CLI does: on blanks, a double-quoted string being one word."""
    tokens: list[Token] = []
    for match in re.finditer(r'"((?:[^"\\]|\\.)*)"?|(\S+)', line):
        if match.group(2) is not None:
            tokens.append(Token(match.group(2), match.start()))
        else:
            tokens.append(Token(match.group(1), match.start(), quoted=True))
    return tokens


def quote_if_needed(text: str) -> str:
    """``text`` as Junos shows a free-text value: quoted only when it holds blanks or special characters."""
    return f'"{text}"' if _NEEDS_QUOTES.search(text) else text


def _is_name(word: str) -> bool:
    return bool(_NAME.match(word))


def _is_uint(word: str) -> bool:
    return word.isdigit() and int(word) < 2**31


def _is_interface_address(word: str) -> bool:
    # an interface address keeps its host bits (203.0.113.2/24), unlike an address-book prefix
    if "/" not in word:
        return False
    try:
        ipaddress.IPv4Interface(word)
    except ValueError:
        return False
    return True


def _is_prefix(word: str) -> bool:
    if "/" not in word:
        return False
    try:
        ipaddress.ip_network(word, strict=True)
    except ValueError:
        return False
    return True


def _is_network(family: int) -> Callable[[str], bool]:
    # a static route's destination: a strict prefix of one address family, host bits clear
    def accepts(word: str) -> bool:
        if "/" not in word:
            return False
        try:
            return ipaddress.ip_network(word, strict=True).version == family
        except ValueError:
            return False

    return accepts


def _is_address(family: int) -> Callable[[str], bool]:
    def accepts(word: str) -> bool:
        try:
            return ipaddress.ip_address(word).version == family
        except ValueError:
            return False

    return accepts


def _is_inet6_interface(word: str) -> bool:
    if "/" not in word:
        return False
    try:
        ipaddress.IPv6Interface(word)
    except ValueError:
        return False
    return True


def _is_ports(word: str) -> bool:
    match = _PORTS.match(word)
    if not match:
        return False
    low = int(match.group(1))
    high = int(match.group(2) or low)
    return 1 <= low <= high <= 65535


def _one_of(*words: str) -> Callable[[str], bool]:
    return lambda word: word in words


def _anything(word: str) -> bool:
    return True


def _is_secret(word: str) -> bool:
    return bool(word) and " " not in word


# A word of a statement: a keyword (str) or a value check with how its canonical form is written.
@dataclass(frozen=True)
class Value:
    """A value slot in a statement: ``accepts`` checks the word; ``style`` is how display set writes it."""

    accepts: Callable[[str], bool]
    style: str = "plain"  # plain | text (quoted when needed) | secret (always quoted) | ip (compressed)


NAME = Value(_is_name)
Word = str | Value


@dataclass(frozen=True)
class Statement:
    """One statement Junos accepts; ``single`` means a new value replaces the old one (a leaf), otherwise
    values accumulate (a leaf-list such as ``match source-address``)."""

    words: tuple[Word, ...]
    single: bool = True


_POLICY: tuple[Word, ...] = ("security", "policies", "from-zone", NAME, "to-zone", NAME, "policy", NAME)
STATEMENTS: tuple[Statement, ...] = (
    Statement(("version", Value(_is_name))),
    Statement(("system", "host-name", NAME)),
    Statement(("system", "root-authentication", "encrypted-password", Value(_is_secret, "secret"))),
    Statement(("system", "login", "user", NAME, "uid", Value(_is_uint))),
    Statement(
        ("system", "login", "user", NAME, "class", Value(_one_of("super-user", "operator", "read-only")))
    ),
    Statement(
        ("system", "login", "user", NAME, "authentication", "encrypted-password", Value(_is_secret, "secret"))
    ),
    Statement(("system", "services", "ssh"), single=False),
    Statement(
        (
            "interfaces",
            Value(lambda word: bool(_INTERFACE.match(word))),
            "unit",
            Value(_is_uint),
            "family",
            "inet",
            "address",
            Value(_is_interface_address),
        ),
        single=False,
    ),
    Statement(
        (
            "interfaces",
            Value(lambda word: bool(_INTERFACE.match(word))),
            "unit",
            Value(_is_uint),
            "family",
            "inet6",
            "address",
            Value(_is_inet6_interface, "ip"),
        ),
        single=False,
    ),
    # next-hop is a leaf-list (several next-hops make an ECMP route); IPv6 routes live in rib inet6.0
    Statement(
        ("routing-options", "static", "route", Value(_is_network(4)), "next-hop", Value(_is_address(4))),
        single=False,
    ),
    Statement(
        (
            "routing-options",
            "rib",
            "inet6.0",
            "static",
            "route",
            Value(_is_network(6), "ip"),
            "next-hop",
            Value(_is_address(6), "ip"),
        ),
        single=False,
    ),
    Statement(
        (
            "security",
            "zones",
            "security-zone",
            NAME,
            "interfaces",
            Value(lambda word: bool(_LOGICAL.match(word))),
        ),
        single=False,
    ),
    Statement(("security", "address-book", "global", "address", NAME, Value(_is_prefix))),
    Statement(("applications", "application", NAME, "protocol", Value(_one_of("tcp", "udp", "icmp")))),
    Statement(("applications", "application", NAME, "destination-port", Value(_is_ports))),
    Statement((*_POLICY, "match", "source-address", NAME), single=False),
    Statement((*_POLICY, "match", "destination-address", NAME), single=False),
    Statement((*_POLICY, "match", "application", NAME), single=False),
    Statement((*_POLICY, "then", Value(_one_of("permit", "deny", "reject")))),
    Statement((*_POLICY, "description", Value(_anything, "text"))),
)


def _write(word: Word, token: Token) -> str:
    if isinstance(word, Value) and word.style == "secret":
        return f'"{token.text}"'
    if isinstance(word, Value) and word.style == "text":
        return quote_if_needed(token.text)
    if isinstance(word, Value) and word.style == "ip":
        # Junos shows IPv6 in its compressed lower-case form whatever was typed
        if "/" in token.text:
            return str(ipaddress.ip_interface(token.text))
        return str(ipaddress.ip_address(token.text))
    return token.text


def _accepts(word: Word, token: Token) -> bool:
    if isinstance(word, str):
        return not token.quoted and token.text == word
    return bool(word.accepts(token.text))


@dataclass(frozen=True)
class Parsed:
    """The result of ``parse_set``: the canonical ``path`` and the ``leaf`` prefix a new value replaces
    (``None`` for leaf-lists), or ``bad`` (index of the word Junos points its caret at)."""

    path: str = ""
    leaf: str | None = None
    bad: int | None = None


def parse_set(tokens: list[Token]) -> Parsed:
    """Check the words after ``set`` against ``STATEMENTS``."""
    furthest = 0
    for statement in STATEMENTS:
        matched = 0
        for word, token in zip(statement.words, tokens, strict=False):
            if not _accepts(word, token):
                break
            matched += 1
        if matched == len(statement.words) == len(tokens):
            words = [_write(w, t) for w, t in zip(statement.words, tokens, strict=True)]
            leaf = " ".join(words[:-1]) + " " if statement.single else None
            return Parsed(path=" ".join(words), leaf=leaf)
        furthest = max(furthest, matched)
    return Parsed(bad=furthest)


def canonical_path(tokens: list[Token]) -> str:
    """A path typed after ``delete`` or ``show``, written as display set writes it."""
    return " ".join(quote_if_needed(t.text) if t.quoted else t.text for t in tokens)


def syntax_error(line: str, tokens: list[Token], bad: int) -> str:
    """Junos's answer to a statement it cannot parse: the line, a caret under the bad word, the verdict."""
    column = tokens[bad].start if bad < len(tokens) else len(line.rstrip()) + 1
    return f"{line.rstrip()}\n{' ' * column}^\nsyntax error."
