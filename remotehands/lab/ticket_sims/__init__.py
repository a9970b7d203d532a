"""HTTP simulators of the ticket systems remotehands talks to, built from each vendor's public API
documentation, for the lab, the adapter contract suite and the webhook tests."""
