"""Where the real tools the checks run are, and why one is missing.

=============  ===============================================================  ========================
tool           what it checks                                                   installed by
=============  ===============================================================  ========================
Chromium       axe-core accessibility, layout at 375/600 px (Playwright drives   ``apt-get install
               Debian's browser at the ``chromium_path`` setting; never a        chromium``
               downloaded one)
axe-core       WCAG rules, injected into the page                               ``make tools`` (npm, into
                                                                                ``tools/node_modules``)
caniemail      Can I Email support data + its checker, run by Node              ``make tools``
SpamAssassin   ``spamassassin -L`` (local tests only, no network)               ``apt-get install
                                                                                spamassassin``
=============  ===============================================================  ========================

The npm packages live in the ``tools_dir`` setting (default: ``tools/`` beside the ``campaigns``
package, with its package.json and package-lock.json); nothing is fetched at check time.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from campaigns.config import Settings

PROJECT_TOOLS = Path(__file__).resolve().parent.parent.parent / "tools"
#: caniemail 2 needs Node 20.19 or later
NODE_MINIMUM = (20, 19)


@lru_cache(maxsize=4)
def node_version(node: str) -> tuple[int, ...] | None:
    try:
        out = subprocess.run(
            [node, "--version"], capture_output=True, text=True, timeout=30, check=False
        ).stdout
        return tuple(int(p) for p in out.strip().lstrip("v").split(".")[:2])
    except (OSError, ValueError, subprocess.TimeoutExpired):
        return None


@dataclass(frozen=True)
class Toolbox:
    """The tools found on this machine; each ``*_missing`` is None when the tool is usable, else why not."""

    chromium: Path | None
    node: str | None
    tools_dir: Path
    spamassassin: str | None

    @classmethod
    def detect(cls, settings: Settings) -> Toolbox:
        chromium = Path(settings.chromium_path) if settings.chromium_path else None
        return cls(
            chromium=chromium if chromium is not None and chromium.exists() else None,
            node=shutil.which("node"),
            tools_dir=Path(settings.tools_dir) if settings.tools_dir else PROJECT_TOOLS,
            spamassassin=shutil.which("spamassassin"),
        )

    @property
    def axe_script(self) -> Path:
        return self.tools_dir / "node_modules" / "axe-core" / "axe.min.js"

    @property
    def caniemail_script(self) -> Path:
        return self.tools_dir / "caniemail-check.mjs"

    @property
    def browser_missing(self) -> str | None:
        if self.chromium is None:
            return "Chromium is not installed (apt-get install chromium, or set chromium_path)"
        try:
            import playwright  # noqa: F401
        except ImportError:
            return "the playwright Python package is not installed (pip install playwright)"
        return None

    @property
    def axe_missing(self) -> str | None:
        if not self.axe_script.exists():
            return (
                f"axe-core is not installed in {self.tools_dir} (run `make tools`, or npm ci --prefix tools)"
            )
        return self.browser_missing

    @property
    def caniemail_missing(self) -> str | None:
        if self.node is None:
            return "Node.js is not installed (apt-get install nodejs npm)"
        version = node_version(self.node)
        if version is None or version < NODE_MINIMUM:
            found = ".".join(map(str, version)) if version else "unknown"
            return f"Node.js {found} is too old for caniemail (needs {'.'.join(map(str, NODE_MINIMUM))} or later)"
        if not (self.tools_dir / "node_modules" / "caniemail").exists() or not self.caniemail_script.exists():
            return (
                f"caniemail is not installed in {self.tools_dir} (run `make tools`, or npm ci --prefix tools)"
            )
        return None

    @property
    def spam_missing(self) -> str | None:
        return None if self.spamassassin else "SpamAssassin is not installed (apt-get install spamassassin)"

    def missing_reasons(self) -> dict[str, str]:
        """Each tool-backed check that cannot run here, with why."""
        reasons = {
            "caniemail": self.caniemail_missing,
            "accessibility": self.axe_missing,
            "layout": self.browser_missing,
            "spam": self.spam_missing,
        }
        return {name: reason for name, reason in reasons.items() if reason}
