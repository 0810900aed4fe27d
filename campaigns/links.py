"""UTM tagging of the shop links in an email.

``utm_source`` and ``utm_medium`` come from settings (defaults ``retain`` / ``email``),
``utm_campaign`` is the campaign name. Parameters already on a link win (a template author can
set ``utm_content`` or override ``utm_campaign``); only http(s) links are tagged, and the
unsubscribe/feedback links (under ``settings.public_url``) never are.
"""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from campaigns.config import Settings


def add_utm(url: str, settings: Settings, campaign: str, **extra: str) -> str:
    """``url`` with ``utm_source``, ``utm_medium``, ``utm_campaign`` (and ``extra``) added if absent."""
    if not url.startswith(("http://", "https://")) or url.startswith(settings.public_url.rstrip("/") + "/"):
        return url
    parts = urlsplit(url)
    present = {k for k, _ in parse_qsl(parts.query, keep_blank_values=True)}
    wanted = {
        "utm_source": settings.utm_source,
        "utm_medium": settings.utm_medium,
        "utm_campaign": campaign,
        **extra,
    }
    added = [(k, v) for k, v in wanted.items() if v and k not in present]
    if not added:
        return url
    query = parts.query + ("&" if parts.query else "") + urlencode(added)
    return urlunsplit((parts.scheme, parts.netloc, parts.path or "/", query, parts.fragment))
