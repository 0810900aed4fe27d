"""UTM tagging of the shop links in an email.

``utm_source`` and ``utm_medium`` come from settings (defaults ``retain`` / ``email``),
``utm_campaign`` is the campaign name. Parameters already on a link win (a template author can
set ``utm_content`` or override ``utm_campaign``); only http(s) links are tagged, and the
unsubscribe/feedback links (under ``settings.public_url``) never are.
"""

from __future__ import annotations

from functools import lru_cache
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from campaigns.config import Settings


def add_utm(url: str, settings: Settings, campaign: str, **extra: str) -> str:
    """``url`` with ``utm_source``, ``utm_medium``, ``utm_campaign`` (and ``extra``) added if absent."""
    return _tagged(
        url,
        settings.public_url,
        settings.utm_source,
        settings.utm_medium,
        campaign,
        tuple(sorted(extra.items())),
    )


@lru_cache(maxsize=65_536)
def _tagged(
    url: str, public_url: str, source: str, medium: str, campaign: str, extra: tuple[tuple[str, str], ...]
) -> str:
    # cached: a campaign links the same products for thousands of recipients
    if not url.startswith(("http://", "https://")) or url.startswith(public_url.rstrip("/") + "/"):
        return url
    parts = urlsplit(url)
    present = {k for k, _ in parse_qsl(parts.query, keep_blank_values=True)}
    wanted = {"utm_source": source, "utm_medium": medium, "utm_campaign": campaign, **dict(extra)}
    added = [(k, v) for k, v in wanted.items() if v and k not in present]
    if not added:
        return url
    query = parts.query + ("&" if parts.query else "") + urlencode(added)
    return urlunsplit((parts.scheme, parts.netloc, parts.path or "/", query, parts.fragment))
