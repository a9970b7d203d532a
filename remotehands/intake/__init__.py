"""Intake: signed webhooks and alerts become tickets' jobs (verify, dedup, fetch at the source, extract)."""
