"""Playbooks driven by tickets (``playbook.run``, through ansible-runner) and their progress on the ticket."""
