"""SSH to hosts with pinned host keys (paramiko; never a blanket auto-add policy)."""
