"""Job states as a transition table. Code fires events; it never assigns a state directly."""

from __future__ import annotations

from enum import StrEnum

from remotehands.errors import InternalError


class JobState(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    WAITING = "waiting"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    NEEDS_OPERATOR = "needs_operator"


class JobEvent(StrEnum):
    START = "start"  # a worker claimed it and acts
    WAIT = "wait"  # a step asked to be called again later (or on callback); the worker is freed
    SUCCEED = "succeed"
    FAIL = "fail"
    ESCALATE = "escalate"  # a human must decide
    CANCEL = "cancel"
    RELEASE = "release"  # a worker stopped between steps; another may pick it up
    RETRY = "retry"  # an operator sends a needs_operator job back to the queue


Q, R, W = JobState.QUEUED, JobState.RUNNING, JobState.WAITING
S, F, C, N = JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED, JobState.NEEDS_OPERATOR

TRANSITIONS: dict[tuple[JobState, JobEvent], JobState] = {
    (Q, JobEvent.START): R,
    (W, JobEvent.START): R,
    (R, JobEvent.START): R,  # a lease taken over after a crash
    (R, JobEvent.WAIT): W,
    (R, JobEvent.RELEASE): Q,
    (R, JobEvent.SUCCEED): S,
    (R, JobEvent.FAIL): F,
    (Q, JobEvent.FAIL): F,  # deadline passed before anyone ran it
    (W, JobEvent.FAIL): F,  # deadline passed while waiting
    (R, JobEvent.ESCALATE): N,
    (Q, JobEvent.CANCEL): C,
    (R, JobEvent.CANCEL): C,
    (W, JobEvent.CANCEL): C,
    (N, JobEvent.CANCEL): C,
    (N, JobEvent.RETRY): Q,
}

# A target is held by a job in any of these states: one active job per target.
# needs_operator holds it too: the host is in a state nobody has confirmed.
ACTIVE: frozenset[JobState] = frozenset({Q, R, W, N})
TERMINAL: frozenset[JobState] = frozenset({S, F, C})


def next_state(state: JobState | str, event: JobEvent) -> JobState:
    """The state after ``event`` in ``state``; raises ``InternalError`` for a transition not in the table."""
    try:
        return TRANSITIONS[(JobState(state), event)]
    except KeyError:
        raise InternalError(f"job state machine: no transition from {state} on {event}") from None
