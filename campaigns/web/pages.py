"""Server-rendered pages: one autoescaping Jinja environment over ``campaigns/web/templates``.

These are the web UI's own pages, not campaign emails; they never render user-edited templates.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jinja2
from starlette.responses import HTMLResponse

from campaigns.money import format_money

PAGES_DIR = Path(__file__).parent / "templates"

_env = jinja2.Environment(
    loader=jinja2.FileSystemLoader(str(PAGES_DIR)),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
_env.filters["pct"] = lambda v, digits=1: "–" if v is None else f"{v * 100:.{digits}f}%"
_env.filters["money"] = lambda v, currency="": (
    "–" if v is None else format_money(v, currency) if currency else f"{v:,.2f}"
)
_env.filters["num"] = lambda v: "–" if v is None else f"{v:,}"


def render_page(page: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    """The page template ``page`` rendered with ``context`` as an HTML response."""
    return HTMLResponse(_env.get_template(page).render(**context), status_code=status_code)
