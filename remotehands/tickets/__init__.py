"""Ticket systems: the TicketSystem interface, the builtin one, and ticket -> TaskRequest."""
