"""Reconcile the job store with the template files: added, changed and removed jobs, with reasons.

Only the jobs ``plan`` owns (``campaign:*`` and ``train``) are touched; pending retries run out on
their own. Unchanged jobs are left alone, so their next fire time — and with it the detection of
runs missed while the scheduler was down — survives every restart. A template that fails to load
is reported and skipped (its existing jobs are kept until it is fixed), never raised.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from apscheduler.triggers.date import DateTrigger

from campaigns.config import Settings
from campaigns.definition import TEMPLATE_SUFFIX, CampaignDefinition, campaign_paths, load_campaign
from campaigns.errors import TemplateError
from campaigns.scheduling.plan import JobSpec, desired_jobs, is_managed, job_fingerprint, run_key
from campaigns.scheduling.zones import audience_zones


@dataclass
class SyncReport:
    """What ``sync_jobs`` found (and, when ``applied``, did)."""

    added: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    unchanged: int = 0
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    applied: bool = True

    @property
    def has_changes(self) -> bool:
        return bool(self.added or self.changed or self.removed)

    def lines(self) -> list[str]:
        """The diff as text, one line per job: ``+ added``, ``~ changed``, ``- removed``, ``! problem``."""
        out = (
            [f"+ {x}" for x in self.added]
            + [f"~ {x}" for x in self.changed]
            + [f"- {x}" for x in self.removed]
        )
        out += [f"! {x}" for x in self.problems] + [f"  note: {x}" for x in self.notes]
        out.append(
            f"{len(self.added)} added, {len(self.changed)} changed, {len(self.removed)} removed, "
            f"{self.unchanged} unchanged" + ("" if self.applied else " (not applied)")
        )
        return out

    def to_json(self) -> dict[str, Any]:
        return {
            "added": self.added,
            "changed": self.changed,
            "removed": self.removed,
            "unchanged": self.unchanged,
            "problems": self.problems,
            "notes": self.notes,
            "applied": self.applied,
        }


def load_definitions(templates_dir: str | Path) -> tuple[list[CampaignDefinition], list[str], set[str]]:
    """``(valid campaigns, problems, names of broken files)``; one bad file never hides the others.

    Raises NotFoundError when the templates directory itself is missing.
    """
    found: dict[str, CampaignDefinition] = {}
    problems: list[str] = []
    broken: set[str] = set()
    for path in campaign_paths(Path(templates_dir)):
        stem = path.name.removesuffix(TEMPLATE_SUFFIX)
        try:
            d = load_campaign(path)
        except TemplateError as exc:
            problems.append(
                f"{exc} (campaign {stem!r} skipped; its existing jobs are kept until it is fixed)"
            )
            broken.add(stem)
            continue
        if d.name in found:
            problems.append(
                f"{path}: campaign name {d.name!r} is also used by {found[d.name].path} (skipped)"
            )
            broken.add(d.name)
            continue
        found[d.name] = d
    return [found[k] for k in sorted(found)], problems, broken


def plan_jobs(
    store: Any, settings: Settings, definitions: list[CampaignDefinition]
) -> tuple[list[JobSpec], list[str]]:
    """The desired jobs for ``definitions``, with the audience's timezones from the store."""
    zones, notes = audience_zones(store.customer_timezones(), settings.shop_timezone)
    return desired_jobs(definitions, zones, settings.shop_timezone), notes


def _campaign_of(job_id: str) -> str | None:
    if not job_id.startswith("campaign:"):
        return None
    return job_id.removeprefix("campaign:").split("@", 1)[0]


def sync_jobs(scheduler: Any, store: Any, settings: Settings, *, apply: bool = True) -> SyncReport:
    """Diff the started (possibly paused) ``scheduler``'s job store against the templates; apply when asked."""
    definitions, problems, broken = load_definitions(settings.templates_dir)
    disabled = {d.name for d in definitions if not d.enabled}
    definitions = [d for d in definitions if d.enabled]  # `enabled: false` in front matter: never scheduled
    specs, notes = plan_jobs(store, settings, definitions)
    notes += [f"{name}: enabled: false — not scheduled" for name in sorted(disabled)]
    report = SyncReport(problems=problems, notes=notes, applied=apply)
    by_name = {d.name: d for d in definitions}
    existing = {j.id: j for j in scheduler.get_jobs() if is_managed(j.id)}
    to_add: list[JobSpec] = []
    for spec in specs:
        job = existing.get(spec.id)
        if job is None:
            if isinstance(spec.trigger, DateTrigger) and spec.campaign:
                key = run_key(spec.trigger.run_date, spec.zone)
                if store.run_exists(spec.campaign, key):
                    report.notes.append(
                        f"{spec.id}: the one-off run {key} already happened; not scheduled again"
                    )
                    continue
            report.added.append(f"{spec.id}: {spec.name}")
            to_add.append(spec)
        elif job_fingerprint(job.func_ref, job.args, job.trigger) != spec.fingerprint:
            report.changed.append(f"{spec.id}: {job.name} -> {spec.name}")
            to_add.append(spec)
        else:
            report.unchanged += 1
    wanted = {s.id for s in specs}
    to_remove: list[str] = []
    for job_id, job in sorted(existing.items()):
        if job_id in wanted:
            continue
        campaign = _campaign_of(job_id)
        if campaign in broken:
            report.notes.append(f"{job_id}: kept while its template is invalid")
            continue
        if campaign is None:
            why = "no campaign is scheduled any more"
        elif campaign in disabled:
            why = f"campaign {campaign!r} is disabled (enabled: false)"
        elif campaign not in by_name:
            why = f"campaign {campaign!r} was removed from {Path(settings.templates_dir) / 'emails'}"
        elif by_name[campaign].schedule is None and not by_name[campaign].kind_plugin.ticks_without_schedule:
            why = f"campaign {campaign!r} no longer has a schedule"
        else:
            why = "its schedule or timezone changed"
        report.removed.append(f"{job_id}: {job.name} ({why})")
        to_remove.append(job_id)
    if apply:
        for spec in to_add:
            scheduler.add_job(
                spec.func, spec.trigger, args=spec.args, id=spec.id, name=spec.name, replace_existing=True
            )
        for job_id in to_remove:
            scheduler.remove_job(job_id)
    return report
