"""What a check says about one email: a status, a one-line summary, findings and the tool's raw data."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

PASS, WARN, FAIL, SKIPPED = "pass", "warn", "fail", "skipped"
_RANK = {PASS: 0, SKIPPED: 0, WARN: 1, FAIL: 2}


@dataclass(frozen=True, slots=True)
class Finding:
    """One thing a check found; ``severity`` is warn or fail, ``where`` e.g. a URL, a selector, a client."""

    severity: str
    message: str
    where: str = ""


@dataclass(frozen=True, slots=True)
class CheckResult:
    """One check of one email. ``status`` is the worst finding (``skipped`` with the reason as summary
    when the tool it needs is not installed)."""

    name: str  # size | links | images | accessibility | layout | caniemail | spam
    status: str
    summary: str
    findings: tuple[Finding, ...] = ()
    data: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, name: str, summary: str, findings: list[Finding], **data: Any) -> CheckResult:
        status = max((f.severity for f in findings), key=_RANK.__getitem__, default=PASS)
        return cls(name, status, summary, tuple(findings), data)

    @classmethod
    def skipped(cls, name: str, reason: str) -> CheckResult:
        return cls(name, SKIPPED, reason)


@dataclass(frozen=True, slots=True)
class EmailReport:
    """Every check of one email: what was checked (campaign, the context it was rendered for) and the results."""

    campaign: str
    source: str  # "preview fixture", "customer 42 (shop id 17850)", "the largest real email: ..."
    subject: str
    results: tuple[CheckResult, ...]

    @property
    def status(self) -> str:
        return max((r.status for r in self.results), key=_RANK.__getitem__, default=PASS)

    @property
    def ok(self) -> bool:
        return self.status != FAIL

    def result(self, name: str) -> CheckResult | None:
        return next((r for r in self.results if r.name == name), None)

    def problems(self) -> list[str]:
        """``name: message`` for every failing finding (what `retain lint` prints)."""
        return [
            f"{r.name}: {f.message}" + (f" ({f.where})" if f.where else "")
            for r in self.results
            for f in r.findings
            if f.severity == FAIL
        ]

    def to_json(self) -> dict[str, Any]:
        return {
            "campaign": self.campaign,
            "source": self.source,
            "subject": self.subject,
            "status": self.status,
            "checks": [asdict(r) for r in self.results],
        }
