"""Switching slots of shared devices: outlets of one PDU strip are switched on at least ``stagger_seconds``
apart, across threads, processes and machines, by claiming the strip's row with a conditional UPDATE."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import update
from sqlalchemy.exc import IntegrityError

from remotehands.db import Database
from remotehands.jobs.store import aware, now
from remotehands.jobs.tables import DeviceSlot


def claim_device_slot(db: Database, device: str, spacing: float) -> datetime | None:
    """Take the next switching slot of a shared device (a PDU strip): None when taken now, else the time
    at which to try again. Consecutive slots are at least ``spacing`` seconds apart, across all workers."""
    stamp = now()
    with db.session() as s:
        taken = s.execute(
            update(DeviceSlot)
            .where(DeviceSlot.device == device, DeviceSlot.next_at <= stamp)
            .values(next_at=stamp + timedelta(seconds=spacing))
            .execution_options(synchronize_session=False)
        )
        if taken.rowcount == 1:  # type: ignore[attr-defined]
            return None
        slot = s.get(DeviceSlot, device)
        if slot is None:
            s.add(DeviceSlot(device=device, next_at=stamp + timedelta(seconds=spacing)))
            try:
                s.flush()
            except IntegrityError:
                s.rollback()
                return stamp + timedelta(seconds=min(spacing, 1.0))
            return None
        return aware(slot.next_at)


def hold_device_slot(db: Database, device: str, spacing: float) -> None:
    """Push the device's next slot to ``spacing`` seconds from now (called once a switch command has
    returned): the next outlet goes on at least ``spacing`` after this one reached the strip, however long
    the command took after its slot was claimed."""
    stamp = now() + timedelta(seconds=spacing)
    with db.session() as s:
        s.execute(
            update(DeviceSlot)
            .where(DeviceSlot.device == device, DeviceSlot.next_at < stamp)
            .values(next_at=stamp)
            .execution_options(synchronize_session=False)
        )
