"""Campaign definitions: the starter campaigns parse; every kind of bad front matter names file:line."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import pytest

from campaigns.definition import find_campaign, load_campaign, load_campaigns
from campaigns.errors import NotFoundError, TemplateError

ROOT = Path(__file__).resolve().parent.parent
TEMPLATES = ROOT / "templates"

BODY = "<mjml><mj-body></mj-body></mjml>\n"


def write(tmp_path: Path, front: str, body: str = BODY, name: str = "c.mjml") -> Path:
    path = tmp_path / "emails" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("---\n" + front + "---\n" + body)
    return path


def test_starter_campaigns_load() -> None:
    campaigns = {d.name: d for d in load_campaigns(TEMPLATES)}
    # a shop adds its own campaign files beside these: the starter set is a subset, not the whole
    assert {"weekly-picks", "vip-early-access", "thank-you-follow-up", "we-miss-you"} <= set(campaigns)
    wp = campaigns["weekly-picks"]
    assert wp.kind == "recommendation"
    assert wp.recommend.blocks == ("buy_again", "discover") and wp.recommend.count == 4
    assert wp.recommend.exclude_categories == ("gift-wrap",)
    assert (
        wp.schedule is not None and wp.schedule.cron == "0 9 * * MON" and wp.schedule.timezone == "recipient"
    )
    assert wp.schedule.max_lateness == timedelta(hours=6)
    vip = campaigns["vip-early-access"]
    assert vip.promotion is not None and vip.promotion.code == "VIPEARLY20"
    assert vip.promotion.expires == date(2030, 11, 27)
    assert vip.recommend.only_categories == ("home-decor",)  # the promoted category
    assert vip.schedule is not None and vip.schedule.once == date(2030, 11, 20)
    assert vip.schedule.max_lateness == timedelta(hours=12)
    ty = campaigns["thank-you-follow-up"]
    assert ty.follow_up is not None and ty.follow_up.days_after_order == 7
    assert ty.marketing is False
    assert campaigns["we-miss-you"].promotion is not None


def test_body_line_and_paths(tmp_path: Path) -> None:
    path = write(tmp_path, "name: c\nkind: recommendation\nsubject: hi\n")
    d = load_campaign(path)
    assert d.body_line == 6 and d.body == BODY
    assert d.text_path == path.with_suffix(".txt") and d.preview_path.name == "c.preview.json"
    assert d.from_ == "" and d.marketing is True and d.schedule is None


@pytest.mark.parametrize(
    ("front", "line", "needle"),
    [
        ("name: c\nkind: recommendation\nsubject: hi\ncolour: red\n", 5, "unknown key 'colour'"),
        ("name: c\nkind: newsletter\nsubject: hi\n", 3, "unknown kind 'newsletter'"),
        ("name: c\nkind: recommendation\nsubject: hi\nschedule: '0 25 * * *'\n", 5, "bad cron"),
        ("name: c\nkind: recommendation\nsubject: hi\nschedule: '0 9 * *'\n", 5, "5 fields"),
        ("name: c\nkind: recommendation\nsubject: hi\nschedule: '0 9 * * 1'\n", 5, "names"),
        (
            "name: c\nkind: recommendation\nsubject: hi\nschedule:\n  cron: '0 9 * * MON'\n  timezone: Mars/Base\n",
            7,
            "unknown timezone 'Mars/Base'",
        ),
        ("name: c\nkind: recommendation\nsubject: hi\nrecommend: {count: many}\n", 5, "recommend.count"),
        ("name: c\nkind: recommendation\nsubject: hi\nrecommend:\n  blocks: [nope]\n", 6, "unknown block"),
        ("name: c\nkind: recommendation\nsubject: hi\nrecommend:\n  colour: 1\n", 6, "recommend.colour"),
        ("name: c\nkind: promotion\nsubject: hi\n", 3, "needs a 'promotion:'"),
        (
            "name: c\nkind: promotion\nsubject: hi\npromotion: {code: X, discount: 5%, expires: soon}\n",
            5,
            "expires",
        ),
        ("name: c\nkind: recommendation\nsubject: hi\nmarketing: false\n", 5, "post_purchase"),
        ("name: c\nkind: recommendation\nsubject: hi\nholdout: 2\n", 5, "holdout"),
        ("name: c\nkind: recommendation\nsubject: [a\n", 4, "not valid YAML"),
        ("name: Bad Name\nkind: recommendation\nsubject: hi\n", 2, "lower-case"),
    ],
)
def test_bad_front_matter_names_file_and_line(tmp_path: Path, front: str, line: int, needle: str) -> None:
    path = write(tmp_path, front)
    with pytest.raises(TemplateError) as info:
        load_campaign(path)
    assert needle in str(info.value)
    assert str(info.value).startswith(f"{path}:{line}:"), str(info.value)
    assert info.value.line == line


def test_missing_subject_and_front_matter(tmp_path: Path) -> None:
    with pytest.raises(TemplateError, match="missing required key 'subject'"):
        load_campaign(write(tmp_path, "name: c\nkind: winback\n"))
    plain = tmp_path / "emails" / "plain.mjml"
    plain.write_text(BODY)
    with pytest.raises(TemplateError, match=r"plain.mjml:1: .*must start with a '---'"):
        load_campaign(plain)
    unclosed = tmp_path / "emails" / "open.mjml"
    unclosed.write_text("---\nname: c\n")
    with pytest.raises(TemplateError, match="not closed"):
        load_campaign(unclosed)


def test_schedule_forms(tmp_path: Path) -> None:
    d = load_campaign(
        write(tmp_path, "kind: winback\nsubject: s\nschedule: {interval: 2d, timezone: Europe/Paris}\n")
    )
    assert d.name == "c"  # defaults to the file name
    assert (
        d.schedule is not None
        and d.schedule.interval == timedelta(days=2)
        and d.schedule.timezone == "Europe/Paris"
    )
    with pytest.raises(TemplateError, match="exactly one of"):
        load_campaign(
            write(tmp_path, "kind: winback\nsubject: s\nschedule: {interval: 2d, cron: '0 9 * * *'}\n")
        )


def test_find_campaign_lists_known_names(tmp_path: Path) -> None:
    assert find_campaign(TEMPLATES, "we-miss-you").kind == "winback"
    with pytest.raises(NotFoundError) as info:
        find_campaign(TEMPLATES, "nope")
    assert "weekly-picks" in str(info.value) and "nope" in str(info.value)
    with pytest.raises(NotFoundError, match="does not exist"):
        load_campaign(tmp_path / "missing.mjml")
    with pytest.raises(NotFoundError, match="templates directory"):
        load_campaigns(tmp_path / "nowhere")


def test_duplicate_names_refused(tmp_path: Path) -> None:
    write(tmp_path, "name: same\nkind: winback\nsubject: s\n", name="a.mjml")
    write(tmp_path, "name: same\nkind: winback\nsubject: s\n", name="b.mjml")
    with pytest.raises(TemplateError, match="also used by"):
        load_campaigns(tmp_path)
