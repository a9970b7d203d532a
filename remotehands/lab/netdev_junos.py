"""The lab's Juniper SRX: a Junos 22.4 CLI with operational and configuration modes, candidate and
committed configurations, ``commit check``/``commit confirmed``/``rollback``, the confirmed-commit timer and
``show route PREFIX exact``.

What a statement may say lives in ``netdev_junos_grammar``; how candidates, checks, diffs and the routing
table work lives in ``netdev_junos_config``. This module is the device's memory (commit history, the pending confirmed commit)
and the CLI a login talks to.
"""

from __future__ import annotations

import ipaddress
import math
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

from remotehands.lab.netdev_junos_config import (
    DEFAULT_CONFIRM_MINUTES,
    VERSION,
    Commit,
    Edit,
    apply_delete,
    baseline,
    below,
    check,
    compare,
    replay,
    show_route,
)
from remotehands.lab.netdev_junos_grammar import canonical_path, parse_set, syntax_error, tokenize
from remotehands.lab.netdev_model import (
    DROP_AFTER_FIRST_LINE,
    NO_RETURN_AFTER_COMMIT,
    REJECT_SECOND_LINE,
    DeviceSession,
    NetDevice,
    Reply,
    Zone,
)


class JunosDevice(NetDevice):
    """A Juniper vSRX: committed configuration with its commit history, the shared candidate's edits,
    and at most one pending ``commit confirmed``."""

    platform: ClassVar[str] = "juniper_junos"

    def __init__(
        self,
        name: str,
        zones: dict[str, Zone],
        state_file: Path,
        *,
        time_scale: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(name, zones, state_file, time_scale=time_scale, clock=clock)
        first = Commit(tuple(baseline(zones, name)), "root", "other", wall_time=time.time())
        self.commits: list[Commit] = [first]  # newest first, as rollback numbers them
        self.shared_edits: list[Edit] = []
        self.lock_owner: Any = None  # the session in configure exclusive, if any
        self.confirm_deadline: float | None = None
        self.confirm_restore: tuple[str, ...] = ()
        self.saved()

    @property
    def committed(self) -> list[str]:
        """The active configuration's statements."""
        return list(self.commits[0].lines)

    @property
    def hostname(self) -> str:
        """``system host-name`` of the committed configuration: the prompt follows a commit."""
        for line in self.commits[0].lines:
            if line.startswith("system host-name "):
                return line.split()[-1]
        return self.name

    def running_config(self) -> str:
        """``show configuration | display set``."""
        return "".join(f"set {line}\n" for line in self.commits[0].lines)

    def new_session(self, user: str) -> DeviceSession:
        """An operational-mode CLI login."""
        return JunosSession(self, user)

    def commit(self, lines: list[str], user: str, comment: str, confirm_minutes: int | None) -> None:
        """Make ``lines`` the active configuration; with ``confirm_minutes`` arm (or re-arm) the rollback to
        the configuration before the first unconfirmed commit, otherwise confirm a pending one."""
        if confirm_minutes is not None:
            if self.confirm_deadline is None:
                self.confirm_restore = self.commits[0].lines
            self.confirm_deadline = self.clock() + self.minutes(confirm_minutes)
        else:
            self.confirm_deadline = None
        entry = Commit(tuple(lines), user, "cli", comment, confirm_minutes, time.time())
        self.commits.insert(0, entry)
        del self.commits[50:]  # Junos keeps rollback 0..49
        self.saved()

    def age(self, statements: tuple[str, ...]) -> float:
        """Seconds since ``statements`` have all been active without a break (a route's age)."""
        since = self.commits[0].wall_time
        for entry in self.commits:
            if not all(line in entry.lines for line in statements):
                break
            since = entry.wall_time
        return max(0.0, time.time() - since)

    def minutes_left(self) -> int:
        """Whole simulated minutes until a pending confirmed commit rolls back (rounded up, as Junos shows)."""
        if self.confirm_deadline is None:
            return 0
        return max(1, math.ceil((self.confirm_deadline - self.clock()) / self.time_scale))

    def tick(self, now: float) -> None:
        """Roll back an unconfirmed commit whose time is up, and let logins in again."""
        if self.confirm_deadline is None or now < self.confirm_deadline:
            return
        self.confirm_deadline = None
        self.commits.insert(0, Commit(self.confirm_restore, "root", "other", wall_time=time.time()))
        del self.commits[50:]
        self.saved()
        self.accepting = True  # last: whoever sees logins answered again sees the restored state file


_CLI_SETTINGS = {
    "screen-width": "Screen width set to {}",
    "screen-length": "Screen length set to {}",
}


def pipe(text: str, filters: list[str]) -> str | None:
    """Apply Junos output pipes (``match``, ``except``, ``count``, ``no-more``); None for an unknown one.
    ``display set`` is handled by the caller because it changes what is shown, not how."""
    lines = text.split("\n") if text else []
    for spec in filters:
        verb, _, arg = spec.strip().partition(" ")
        arg = arg.strip().strip('"')
        if verb == "match":
            lines = [line for line in lines if re.search(arg, line)]
        elif verb == "except":
            lines = [line for line in lines if not re.search(arg, line)]
        elif verb == "count":
            lines = [f"Count: {len(lines)} lines"]
        elif verb != "no-more":
            return None
    return "\n".join(lines)


class JunosSession(DeviceSession):
    """One CLI login: operational mode, or configuration mode on a private or the shared candidate."""

    def __init__(self, device: JunosDevice, user: str) -> None:
        super().__init__(device, user)
        self.srx = device
        self.configuring = False
        self.private = False  # own candidate (configure private or exclusive)
        self.exclusive = False  # configure exclusive: holds the lock, may commit confirmed
        self.own_edits: list[Edit] = []
        self.changes = 0  # configuration lines of this configuration session (faults count them)
        self.asking = False  # "Exit with uncommitted changes?" is waiting for an answer

    def greeting(self) -> str:
        """The banner Junos prints after login."""
        return f"--- JUNOS {VERSION} Kernel 64-bit  JNPR-12.1-20231013.108e0b5_buil\n"

    def prompt(self) -> str:
        """``admin@fw-srx-01> `` or ``admin@fw-srx-01# `` (or the pending question)."""
        if self.asking:
            return "Exit with uncommitted changes? [yes,no] (yes) "
        return f"{self.user}@{self.srx.hostname}{'#' if self.configuring else '>'} "

    @property
    def edits(self) -> list[Edit]:
        """The edits of the candidate this session works on."""
        return self.own_edits if self.private else self.srx.shared_edits

    def candidate(self) -> list[str]:
        """The candidate configuration as this session sees it."""
        return replay(self.srx.committed, self.edits)

    def closed(self) -> None:
        """A private or exclusive candidate dies with its session, and the lock with it."""
        self.own_edits.clear()
        self._unlock()

    def _unlock(self) -> None:
        if self.srx.lock_owner is self:
            self.srx.lock_owner = None

    def handle(self, line: str) -> Reply:
        """Answer one line in the current mode."""
        text = line.strip()
        if self.asking:
            self.asking = False
            if text in ("", "yes", "y"):
                return self._leave()
            return Reply(self._in_config(""))
        if not self.configuring:
            if text in ("exit", "quit"):
                return Reply(close=True)
            return Reply(self.operational(text))
        return self._configuration(text)

    # operational mode

    def operational(self, text: str) -> str:
        """Answer an operational-mode command (also reached through ``run`` in configuration mode)."""
        command, *pipes = text.split("|")
        words = command.split()
        if not words:
            return ""
        if words[0] == "configure" and not self.configuring and len(words) <= 2:
            return self._enter(words[1:])
        if words[:2] == ["set", "cli"] and len(words) >= 3:
            return self._cli_setting(words[2:])
        if words[:2] == ["show", "configuration"]:
            return self._show(self.srx.committed, words[2:], pipes)
        if words[:3] == ["show", "system", "commit"]:
            return pipe(self._commit_list(), pipes) or ""
        if words[:2] == ["show", "version"]:
            return pipe(self._version(), pipes) or ""
        if words[:2] == ["show", "route"] and len(words) == 4 and words[3] == "exact":
            try:
                prefix = ipaddress.ip_network(words[2], strict=True)
            except ValueError:
                return f"{' ' * (len(self.prompt()) + command.index(words[2]))}^\nsyntax error."
            return pipe(show_route(self.srx.committed, prefix, self.srx.age), pipes) or ""
        bad = next((i for i, w in enumerate(words) if w not in _OPERATIONAL_WORDS), len(words) - 1)
        column = len(self.prompt()) + command.index(words[bad]) if bad < len(words) else len(self.prompt())
        return f"{' ' * column}^\nunknown command."

    def _cli_setting(self, words: list[str]) -> str:
        if words == ["complete-on-space", "off"]:
            return "Disabling complete-on-space"
        if len(words) == 2 and words[0] in _CLI_SETTINGS and words[1].isdigit():
            return _CLI_SETTINGS[words[0]].format(words[1])
        return "error: syntax error"

    def _version(self) -> str:
        return (
            f"Hostname: {self.srx.hostname}\nModel: vsrx\nJunos: {VERSION}\n"
            f"JUNOS Software Release [{VERSION}]"
        )

    def _commit_list(self) -> str:
        out = []
        for number, entry in enumerate(self.srx.commits):
            stamp = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(entry.wall_time))
            how = f"{entry.via} commit confirmed, rollback in {entry.confirm_minutes}mins"
            line = f"{number:<4}{stamp} by {entry.user} via {how if entry.confirm_minutes else entry.via}"
            out.append(line)
            if entry.comment:
                out.append(f"    {entry.comment}")
        return "\n".join(out)

    def _show(self, lines: list[str], path: list[str], pipes: list[str]) -> str:
        where = canonical_path(tokenize(" ".join(path)))
        if where:
            lines = [line for line in lines if below(line, where)]
        # only the display-set form is simulated (the brace form needs the whole schema), so it is the default
        filters = [p for p in pipes if p.split() != ["display", "set"]]
        return pipe("\n".join(f"set {line}" for line in lines), filters) or ""

    def _enter(self, how: list[str]) -> str:
        if how and how not in (["private"], ["exclusive"]):
            return f"{' ' * (len(self.prompt()) + 10)}^\nsyntax error, expecting <command>."
        if how and self.srx.shared_edits:
            return "error: shared configuration database modified\nUsers currently editing the configuration:"
        if how == ["exclusive"] and self.srx.lock_owner not in (None, self):
            return f"error: configuration database locked by:\n  {self.srx.lock_owner.user} terminal p0"
        # An exclusive session edits its own candidate too (discarded on exit) and holds the lock.
        self.configuring, self.private, self.changes = True, bool(how), 0
        self.exclusive = how == ["exclusive"]
        if self.exclusive:
            self.srx.lock_owner = self
        self.own_edits.clear()
        if self.private:
            return self._in_config(
                "warning: uncommitted changes will be discarded on exit\nEntering configuration mode"
            )
        note = "\nThe configuration has been changed but not committed" if self.srx.shared_edits else ""
        return self._in_config("Entering configuration mode" + note)

    # configuration mode

    def _in_config(self, body: str) -> str:
        """``body`` followed by the blank line, the confirmed-commit notice and ``[edit]`` Junos prints."""
        banner = ""
        if self.srx.confirm_deadline is not None:
            banner = f"# commit confirmed will be rolled back in {self.srx.minutes_left()} minutes\n"
        return (body + "\n" if body else "") + "\n" + banner + "[edit]"

    def _configuration(self, text: str) -> Reply:
        words = text.split()
        verb = words[0] if words else ""
        if verb in ("set", "delete"):
            return self._change(text)
        if verb == "commit":
            return self._commit(text)
        if verb == "rollback":
            return Reply(self._in_config(self._rollback(words[1:])))
        if verb == "run":
            return Reply(self._in_config(self.operational(text[3:].strip())))
        if verb == "show":
            return Reply(self._in_config(self._config_show(text)))
        if words in (["exit"], ["quit"], ["exit", "configuration-mode"]):
            return self._exit()
        if verb in ("", "top"):
            return Reply(self._in_config(""))
        column = len(self.prompt()) + text.index(verb)
        return Reply(self._in_config(f"{' ' * column}^\nunknown command."))

    def _config_show(self, text: str) -> str:
        command, *pipes = text.split("|")
        if [p.strip() for p in pipes] == ["compare"]:
            return compare(self.srx.committed, self.candidate())
        return self._show(self.candidate(), command.split()[1:], pipes)

    def _change(self, text: str) -> Reply:
        tokens = tokenize(text)
        self.changes += 1
        if self.changes == 2 and self.srx.fire(REJECT_SECOND_LINE):
            return Reply(self._in_config(syntax_error(text, tokens, min(1, len(tokens) - 1))))
        if tokens[0].text == "set":
            parsed = parse_set(tokens[1:])
            if parsed.bad is not None:
                return Reply(self._in_config(syntax_error(text, tokens, parsed.bad + 1)))
            self.edits.append(Edit("set", parsed.path, parsed.leaf))
            body = ""
        else:
            path = canonical_path(tokens[1:])
            if not path or apply_delete(self.candidate(), path) == self.candidate():
                body = "warning: statement not found"
            else:
                self.edits.append(Edit("delete", path))
                body = ""
        close = self.changes == 1 and self.srx.fire(DROP_AFTER_FIRST_LINE)
        return Reply(self._in_config(body), close=close)

    def _commit(self, text: str) -> Reply:
        words = tokenize(text)[1:]
        check_only, confirm, comment, and_quit = False, None, "", False
        index = 0
        while index < len(words):
            word = words[index].text
            if word == "check" and index == 0:
                check_only = True
            elif word == "confirmed":
                confirm = DEFAULT_CONFIRM_MINUTES
                if index + 1 < len(words) and words[index + 1].text.isdigit():
                    index += 1
                    confirm = int(words[index].text)
                    if not 1 <= confirm <= 65535:
                        return Reply(self._in_config("error: value is not within range (1..65535)"))
            elif word == "comment" and index + 1 < len(words):
                index += 1
                comment = words[index].text
            elif word == "and-quit":
                and_quit = True
            else:
                column = len(self.prompt()) + words[index].start
                return Reply(self._in_config(f"{' ' * column}^\nsyntax error, expecting <command>."))
            index += 1
        if confirm is not None and self.private and not self.exclusive:
            # Junos refuses a confirmed commit of a private candidate (use configure exclusive).
            return Reply(self._in_config("error: 'commit confirmed' is not supported in private mode"))
        if self.srx.lock_owner not in (None, self) and not check_only:
            return Reply(
                self._in_config(f"error: configuration database locked by {self.srx.lock_owner.user}")
            )
        candidate = self.candidate()
        errors = check(candidate)
        if errors:
            return Reply(self._in_config("\n".join([*errors, "error: configuration check-out failed"])))
        if check_only:
            return Reply(self._in_config("configuration check succeeds"))
        self.srx.commit(candidate, self.user, comment, confirm)
        self.edits.clear()
        body = "commit complete"
        if confirm is not None:
            body = f"commit confirmed will be automatically rolled back in {confirm} minutes unless confirmed\n{body}"
            if self.srx.fire(NO_RETURN_AFTER_COMMIT):
                self.srx.accepting = False
                return Reply(body, close=True)
        if and_quit:
            return self._leave(body + "\nExiting configuration mode")
        return Reply(self._in_config(body))

    def _rollback(self, words: list[str]) -> str:
        number = int(words[0]) if words and words[0].isdigit() else 0 if not words else -1
        if not 0 <= number < 50 or len(words) > 1:
            return "error: syntax error, expecting <number>"
        if number >= len(self.srx.commits):
            return f"error: rollback {number} does not exist"
        self.edits.clear()
        if number:
            self.edits.append(Edit("load", lines=self.srx.commits[number].lines))
        return "load complete"

    def _exit(self) -> Reply:
        if not self.private and self.srx.shared_edits:
            self.asking = True
            return Reply("The configuration has been changed but not committed")
        return self._leave()

    def _leave(self, body: str = "Exiting configuration mode") -> Reply:
        self.own_edits.clear()
        self._unlock()
        self.configuring = self.private = self.exclusive = False
        return Reply(body + "\n")


_OPERATIONAL_WORDS = frozenset({"show", "configure", "set", "cli", "exit", "quit", "run", "route"})
