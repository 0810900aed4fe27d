"""SpamAssassin's verdict on one wire message: ``spamassassin -L -t`` (local tests only: no DNS
blocklists, no URIBL, no Razor/Pyzor; no Bayes database; preferences and state in a throw-away directory, never the user's home).

The score counts every rule that hit except :data:`SETUP_RULES`, rules that fire because the message
is checked before it is sent rather than because of what it says. Pass at 0.5 points or less, warn
below SpamAssassin's spam threshold (5.0), fail at or above it. The full rule table is in ``data``.
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
from dataclasses import dataclass

from campaigns.checks.model import FAIL, WARN, CheckResult, Finding

PASS_SCORE = 0.5
SPAM_SCORE = 5.0
TIMEOUT_SECONDS = 120

#: rules caused by checking a message that has not been relayed, or without DNS; never the content's fault
SETUP_RULES = {
    "NO_RECEIVED": "the message is checked before any server relays it (no Received headers)",
    "NO_RELAYS": "the message is checked before any server relays it",
    "DKIM_SIGNED": "informational: the message carries a DKIM signature",
    "DKIM_INVALID": "local tests only: the DKIM key cannot be fetched from DNS, so the signature cannot verify",
    "T_DKIM_INVALID": "local tests only: the DKIM key cannot be fetched from DNS, so the signature cannot verify",
}


def _config_args(home: str) -> list[str]:
    """No Bayes learning or database; its path, like the preferences, in the throw-away home."""
    return ["--cf", "use_bayes 0", "--cf", "bayes_auto_learn 0", "--cf", f"bayes_path {home}/bayes"]


_HEADER_RE = re.compile(r"Content analysis details:\s+\((-?[\d.]+) points?, (-?[\d.]+) required\)")
_ROW_RE = re.compile(r"^\s*(-?\d+(?:\.\d+)?)\s+([A-Z0-9_]+)\s+(.*)$")


@dataclass(frozen=True, slots=True)
class Rule:
    name: str
    score: float
    description: str


@dataclass(frozen=True, slots=True)
class SpamReport:
    total: float  # SpamAssassin's own score
    rules: tuple[Rule, ...]
    setup: frozenset[str] = frozenset(SETUP_RULES)

    @property
    def score(self) -> float:
        """The score without the setup rules."""
        return round(sum(r.score for r in self.rules if r.name not in self.setup), 3)

    def table(self) -> str:
        """The rule table as SpamAssassin prints it, setup rules marked."""
        lines = [f"{'pts':>5}  {'rule':<26} description"]
        for r in self.rules:
            mark = "  (setup)" if r.name in self.setup else ""
            lines.append(f"{r.score:>5.1f}  {r.name:<26} {r.description}{mark}")
        lines.append(f"score {self.total:.1f}; without setup rules {self.score:.1f}")
        return "\n".join(lines)


def parse_report(output: str) -> SpamReport:
    """The score and rule table of ``spamassassin -t`` output."""
    match = _HEADER_RE.search(output)
    if match is None:
        raise ValueError("no 'Content analysis details' in the SpamAssassin output")
    rules: list[Rule] = []
    started = False
    for line in output[match.end() :].splitlines():
        if line.startswith("----"):
            started = True
            continue
        if not started:
            continue
        if not line.strip():
            if rules:
                break
            continue
        row = _ROW_RE.match(line)
        if row:
            rules.append(Rule(row.group(2), float(row.group(1)), row.group(3).strip()))
        elif rules and line.startswith(" "):  # a description continued on the next line
            last = rules[-1]
            rules[-1] = Rule(last.name, last.score, f"{last.description} {line.strip()}")
        else:
            break
    return SpamReport(float(match.group(1)), tuple(rules))


def run_spamassassin(message: bytes, executable: str = "spamassassin") -> SpamReport:
    """Score one wire message. Raises RuntimeError when SpamAssassin fails."""
    with tempfile.TemporaryDirectory(prefix="retain-sa-") as home:
        env = dict(os.environ, HOME=home)
        proc = subprocess.run(
            [executable, "-L", "-t", "-x", "-p", f"{home}/user_prefs", *_config_args(home)],
            input=message,
            capture_output=True,
            timeout=TIMEOUT_SECONDS,
            env=env,
            check=False,
        )
    output = proc.stdout.decode("utf-8", "replace")
    try:
        return parse_report(output)
    except ValueError:
        detail = proc.stderr.decode("utf-8", "replace").strip().splitlines()[-3:]
        raise RuntimeError(f"spamassassin exited {proc.returncode}: {' / '.join(detail)}") from None


def spam_check(message: bytes | None, executable: str | None, missing: str | None) -> CheckResult:
    if missing or executable is None:
        return CheckResult.skipped("spam", missing or "SpamAssassin is not installed")
    if message is None:
        return CheckResult.skipped("spam", "no wire message was built")
    try:
        report = run_spamassassin(message, executable)
    except (RuntimeError, subprocess.TimeoutExpired, OSError) as exc:
        return CheckResult("spam", WARN, f"SpamAssassin could not score the email: {exc}")
    findings = []
    counted = [r for r in report.rules if r.name not in report.setup and r.score]
    if report.score >= SPAM_SCORE:
        findings.append(Finding(FAIL, f"scores {report.score:.1f}: SpamAssassin files it as spam"))
    elif report.score > PASS_SCORE:
        findings.append(
            Finding(
                WARN,
                f"scores {report.score:.1f} (aim for {PASS_SCORE} or less)",
                ", ".join(r.name for r in counted),
            )
        )
    return CheckResult.of(
        "spam",
        f"SpamAssassin {report.score:.1f} points (local tests, setup rules discounted)",
        findings,
        score=report.score,
        total=report.total,
        rules=[
            {"rule": r.name, "score": r.score, "description": r.description, "setup": r.name in report.setup}
            for r in report.rules
        ],
    )
