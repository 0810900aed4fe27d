"""Which clicks a person made: scanners, link previews and prefetchers are flagged, not counted as human.

A click on ``/c/<token>`` is stored with a ``reason`` when it is not human (None when it is):

=========================  =============================================================================
reason                     rule
=========================  =============================================================================
(never stored)             a HEAD request (link checkers and prefetchers probe with HEAD)
``scanner user agent``     the User-Agent is empty or names a known security scanner, link preview,
                           crawler or HTTP library (:data:`SCANNER_AGENTS`)
``too soon after delivery``  the click came within :data:`TOO_SOON_SECONDS` of the message being handed
                           to the mail server (no person opens and clicks that fast; gateways do)
``many links at once``     :data:`BURST_LINKS` or more different links of one email clicked within
                           :data:`BURST_SECONDS` (a scanner following every link); every click of the
                           burst, earlier ones included, is re-flagged
=========================  =============================================================================
"""

from __future__ import annotations

from datetime import datetime, timedelta

#: a click this soon after the delivery's sent time is a gateway's, not a person's
TOO_SOON_SECONDS = 10
#: this many distinct links of one email within BURST_SECONDS: a scanner following every link
BURST_LINKS = 3
BURST_SECONDS = 5

SCANNER_UA = "scanner user agent"
TOO_SOON = "too soon after delivery"
BURST = "many links at once"
NOT_HUMAN_REASONS = (SCANNER_UA, TOO_SOON, BURST)

#: lower-case fragments of User-Agents that are never a person (security gateways, previews, bots, libraries)
SCANNER_AGENTS = (
    "barracuda",
    "mimecast",
    "proofpoint",
    "urldefense",
    "messagelabs",
    "symantec",
    "trendmicro",
    "trend micro",
    "forcepoint",
    "zscaler",
    "fortiguard",
    "sophos",
    "safelinks",
    "microsoft office existence discovery",
    "ms-office",
    "skypeuripreview",
    "slackbot",
    "discordbot",
    "whatsapp",
    "telegrambot",
    "facebookexternalhit",
    "twitterbot",
    "linkedinbot",
    "googlebot",
    "google-safety",
    "bingpreview",
    "bingbot",
    "yahoo! slurp",
    "headlesschrome",
    "phantomjs",
    "python-requests",
    "python-urllib",
    "aiohttp",
    "httpx",
    "curl/",
    "wget/",
    "go-http-client",
    "java/",
    "okhttp",
    "libwww-perl",
    "bot/",
    "bot;",
    "crawler",
    "spider",
    "scanner",
    "preview",
)


def scanner_agent(user_agent: str | None) -> bool:
    """True for an empty User-Agent or one naming a known scanner, preview fetcher, bot or library."""
    ua = (user_agent or "").strip().lower()
    return not ua or any(fragment in ua for fragment in SCANNER_AGENTS)


def classify_click(
    *, user_agent: str | None, clicked_at: datetime, delivered_at: datetime | None
) -> str | None:
    """The reason a single click is not human, judged on its own (None: human so far).

    The burst rule needs the email's other clicks: the store applies it when it records the click.
    """
    if scanner_agent(user_agent):
        return SCANNER_UA
    if delivered_at is not None and clicked_at - delivered_at < timedelta(seconds=TOO_SOON_SECONDS):
        return TOO_SOON
    return None


__all__ = [
    "BURST",
    "BURST_LINKS",
    "BURST_SECONDS",
    "NOT_HUMAN_REASONS",
    "SCANNER_AGENTS",
    "SCANNER_UA",
    "TOO_SOON",
    "TOO_SOON_SECONDS",
    "classify_click",
    "scanner_agent",
]
