"""The browser side of ``remotehands serve``: the public status page (``status_routes``) and, behind a
login with an API token, the operator console. Server-rendered Jinja2 pages (``templates/``, autoescaped)
with committed static files (``static/``); nothing to build."""

from __future__ import annotations

from pathlib import Path

from fastapi.templating import Jinja2Templates

HERE = Path(__file__).parent
STATIC = HERE / "static"
templates = Jinja2Templates(directory=HERE / "templates")
