"""The web side of Retain: the local preview + dashboard, and the public endpoints.

Two Starlette apps, deliberately separate:

- :func:`campaigns.web.preview_app.create_preview_app` — ``retain preview``: campaign list, a real
  customer's email (or the fixture) at desktop and mobile widths, live reload, "Send test", and the
  ``/dashboard``. Local-only by default (see :mod:`campaigns.web.security`).
- :func:`campaigns.web.public.create_public_app` — ``retain serve``: one-click unsubscribe
  (``/u/<token>``, RFC 8058) and feedback stars (``/f/<token>``), meant to sit behind the shop's
  domain. It exposes nothing else.

Pages are server-rendered Jinja (``campaigns/web/templates``) with SVG charts drawn in Python; no
front-end build, no request leaves the machine. See docs/web.md.
"""

from __future__ import annotations
