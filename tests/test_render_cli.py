"""The template commands: retain campaigns, render, lint."""

from __future__ import annotations

import shutil
from email import message_from_bytes, policy
from pathlib import Path

import pytest

from campaigns.cli import main

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def templates(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "templates"
    shutil.copytree(ROOT / "templates", root)
    monkeypatch.setenv("RETAIN_TEMPLATES_DIR", str(root))
    monkeypatch.setenv("RETAIN_VAR_DIR", str(tmp_path / "var"))
    monkeypatch.setenv("RETAIN_SECRET_KEY", "cli-test-secret-key-0123456789abcdef")
    monkeypatch.setenv("RETAIN_CONFIG", str(tmp_path / "retain.toml"))
    (tmp_path / "retain.toml").write_text("")
    return root


def test_campaigns_and_lint_pass_on_starters(templates: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["campaigns"]) == 0
    listed = capsys.readouterr().out
    for name in ("weekly-picks", "vip-early-access", "thank-you-follow-up", "we-miss-you"):
        assert name in listed
    assert "active-buyers" in listed and "MON" in listed
    assert main(["lint"]) == 0  # with the email checks, their tools as installed
    assert main(["lint", "weekly-picks", "--quick"]) == 0


def test_lint_names_file_line_and_variable(templates: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = templates / "emails" / "weekly-picks.mjml"
    lines = path.read_text().splitlines()
    target = next(i for i, line in enumerate(lines) if "Hi {{ customer.greeting }}, here is" in line)
    lines[target] = lines[target].replace("customer.greeting", "customer.nickname")
    path.write_text("\n".join(lines) + "\n")
    assert main(["lint", "--quick"]) == 1
    err = capsys.readouterr().err
    assert f"weekly-picks.mjml:{target + 1}:" in err and "nickname" in err
    assert main(["campaigns"]) == 0  # the definition itself is fine


def test_lint_reports_bad_front_matter(templates: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = templates / "emails" / "we-miss-you.mjml"
    path.write_text(path.read_text().replace("kind: winback", "kind: winback\ncolour: blue", 1))
    assert main(["lint", "we-miss-you", "--quick"]) == 1
    assert "we-miss-you.mjml:4: unknown key 'colour'" in capsys.readouterr().err
    assert main(["campaigns"]) == 1


def test_render_fixture_formats(
    templates: Path, tmp_path: Path, capsysbinary: pytest.CaptureFixture[bytes]
) -> None:
    assert main(["render", "thank-you-follow-up", "--fixture", "--format", "text"]) == 0
    text = capsysbinary.readouterr().out.decode()
    assert "Thanks for your order, Ada!" in text and "/f/" in text
    out = tmp_path / "m.eml"
    assert main(["render", "weekly-picks", "--fixture", "--format", "eml", "--out", str(out)]) == 0
    msg = message_from_bytes(out.read_bytes(), policy=policy.default)
    assert msg["To"] == "Ada Lovelace <ada.lovelace@example.com>" and msg["List-Unsubscribe-Post"]
    assert main(["render", "weekly-picks", "--fixture"]) == 0
    assert b"Preview" in capsysbinary.readouterr().out


def test_render_errors_are_messages(templates: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["render", "nope", "--fixture"]) == 1
    assert "no campaign named 'nope'" in capsys.readouterr().err
    assert main(["render", "weekly-picks"]) == 1  # neither --customer nor --fixture
    (templates / "emails" / "weekly-picks.preview.json").unlink()
    assert main(["render", "weekly-picks", "--fixture"]) == 1
    assert "no preview fixture" in capsys.readouterr().err


def test_render_customer_from_the_store(
    templates: Path, tmp_path: Path, capsysbinary: pytest.CaptureFixture[bytes]
) -> None:
    from campaigns.store import Store

    url = f"sqlite:///{tmp_path / 'r.db'}"
    store = Store.open(url)
    store.close()
    assert main(["--db", url, "render", "weekly-picks", "--customer", "404"]) == 1
    assert b"no customer '404'" in capsysbinary.readouterr().err


def test_lint_fails_on_an_insecure_link_or_an_image_without_alt(
    templates: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = templates / "emails" / "we-miss-you.mjml"
    path.write_text(
        path.read_text().replace(
            "{% block content %}",
            '{% block content %}<mj-section><mj-column><mj-text><a href="http://old.example/sale">Sale</a>'
            '</mj-text><mj-image src="https://cdn.example/banner.png" alt="" href="https://shop.example.com/" />'
            "</mj-column></mj-section>",
            1,
        )
    )
    assert main(["lint", "we-miss-you", "--quick"]) == 1
    err = capsys.readouterr().err
    assert "links: link without https (http://old.example/sale)" in err
    assert "images: linked image with empty alt: the link has no name" in err
