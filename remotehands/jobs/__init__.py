"""Durable jobs: tables, the state machine, the step journal, leases, the sweeper, the outbox, executors."""
