"""What the app's handlers share: the runtime, the engine, metrics, resolved webhook keys."""

from __future__ import annotations

from dataclasses import dataclass, field

from remotehands.runtime import Runtime
from remotehands.server.engine import Engine
from remotehands.server.intake_writer import IntakeWriter
from remotehands.server.metrics import Metrics


@dataclass
class ServerState:
    runtime: Runtime
    metrics: Metrics
    engine: Engine | None = None
    secret_cache: dict[str, bytes] = field(default_factory=dict, repr=False)
    writer: IntakeWriter | None = None

    def known_systems(self) -> set[str]:
        return {"builtin", *self.runtime.settings.ticket_systems}

    def wake(self) -> None:
        if self.engine is not None:
            self.engine.wake()

    async def accept(self, system: str, delivery_id: str, ticket_id: str) -> tuple[bool, int]:
        if self.writer is None:
            self.writer = IntakeWriter(self.runtime)
        return await self.writer.submit(system, delivery_id, ticket_id)
