"""The HTTP server (``remotehands serve``): webhooks, alerts, installer callbacks, the API, metrics."""
