"""The ``remotehands`` command line (Typer + Rich): one sub-app per package."""
