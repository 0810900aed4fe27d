"""The signing key: atomic creation, refusal of a bad key, rotation that keeps sent links working."""

from __future__ import annotations

import json
import multiprocessing
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from campaigns.cli import main
from campaigns.config import Settings
from campaigns.errors import ConfigError, TokenError
from campaigns.keys import (
    KEY_FILE,
    MIN_KEY_LENGTH,
    backed_up,
    backup,
    check_key,
    ensure_key_file,
    rotate,
    verification_keys,
)
from campaigns.tokens import UNSUBSCRIBE, sign_token, verify_token

ROOT = Path(__file__).resolve().parent.parent


def _first_start(barrier: Any, results: Any, var_dir: str) -> None:
    barrier.wait()  # every process reaches the key at the same moment
    try:
        results.put(ensure_key_file(var_dir))
    except Exception as exc:  # reported to the test, not lost in the child
        results.put(f"error: {exc!r}")


def test_concurrent_first_start_processes(tmp_path: Path) -> None:
    """Processes starting together on fresh var dirs all read one complete key (never an empty one).

    The same harness with the previous create-then-write code saw different or empty keys in about a
    third of the rounds."""
    ctx = multiprocessing.get_context("fork")
    rounds, procs = 40, 4
    for r in range(rounds):
        var_dir = str(tmp_path / f"var{r}")
        barrier, results = ctx.Barrier(procs), ctx.Queue()
        workers = [ctx.Process(target=_first_start, args=(barrier, results, var_dir)) for _ in range(procs)]
        for w in workers:
            w.start()
        keys = [results.get(timeout=60) for _ in workers]
        for w in workers:
            w.join(timeout=60)
        assert len(set(keys)) == 1, f"round {r}: processes saw different keys: {keys}"
        assert len(keys[0]) >= MIN_KEY_LENGTH and not keys[0].startswith("error")
        assert (Path(var_dir) / KEY_FILE).read_text().strip() == keys[0]
        assert not [p for p in Path(var_dir).iterdir() if p.name != KEY_FILE]  # no temp file left


def test_created_file_is_private_and_complete(tmp_path: Path) -> None:
    key = ensure_key_file(tmp_path)
    path = tmp_path / KEY_FILE
    assert path.stat().st_mode & 0o777 == 0o600
    assert path.read_text() == key + "\n" and len(key) >= 43


@pytest.mark.parametrize("content", ["", "\n", "short-key", "two words that are long enough to pass x"])
def test_bad_key_file_is_refused_with_what_to_do(tmp_path: Path, content: str) -> None:
    (tmp_path / KEY_FILE).write_text(content)
    with pytest.raises(ConfigError, match="secret key file .*(empty|valid key).*backup"):
        check_key(Settings(var_dir=str(tmp_path)))


@pytest.mark.parametrize("command", [["serve", "--port", "0"], ["send", "weekly-picks", "--dry-run"],
                                     ["render", "weekly-picks", "--fixture"]])  # fmt: skip
def test_serve_send_render_refuse_an_empty_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], command: list[str]
) -> None:
    var = tmp_path / "var"
    var.mkdir()
    (var / KEY_FILE).write_text("")
    (tmp_path / "retain.toml").write_text("")
    monkeypatch.setenv("RETAIN_CONFIG", str(tmp_path / "retain.toml"))
    monkeypatch.setenv("RETAIN_VAR_DIR", str(var))
    monkeypatch.setenv("RETAIN_TEMPLATES_DIR", str(ROOT / "templates"))
    monkeypatch.delenv("RETAIN_SECRET_KEY", raising=False)
    assert main(command) == 1
    err = capsys.readouterr().err
    assert "secret key file is empty" in err and "Traceback" not in err
    assert not (var / "retain.db").exists()  # refused before opening anything


def test_short_configured_key_is_refused_and_not_echoed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "retain.toml").write_text("")
    monkeypatch.setenv("RETAIN_CONFIG", str(tmp_path / "retain.toml"))
    monkeypatch.setenv("RETAIN_VAR_DIR", str(tmp_path / "var"))
    monkeypatch.setenv("RETAIN_SECRET_KEY", "hunter2")
    assert main(["render", "weekly-picks", "--fixture"]) == 1
    err = capsys.readouterr().err
    assert "'secret_key' is too short" in err and "hunter2" not in err


def test_rotation_keeps_old_links_working_for_the_period(tmp_path: Path) -> None:
    s = Settings(var_dir=str(tmp_path))
    old = s.resolved_secret_key()
    token = sign_token(old, UNSUBSCRIBE, customer=7, campaign="weekly-picks")
    now = datetime(2026, 1, 1)
    rotate(s, keep_days=30, now=now)
    new = s.resolved_secret_key()
    assert new != old and len(new) >= 43
    keys = verification_keys(s, now=now + timedelta(days=29))
    assert keys[0] == new and old in keys
    assert verify_token(keys, token, UNSUBSCRIBE, 365)["customer"] == 7
    # after the period the old key is gone: the link is refused
    later = verification_keys(s, now=now + timedelta(days=31))
    assert later == (new,)
    with pytest.raises(TokenError, match="bad signature"):
        verify_token(later, token, UNSUBSCRIBE, 365)
    # a second rotation keeps both earlier keys while they are live, and drops expired ones
    rotate(s, keep_days=30, now=now + timedelta(days=10))
    kept = json.loads((tmp_path / "secret.old-keys.json").read_text())
    assert [k["key"].encode() for k in kept] == [new, old]
    assert (tmp_path / "secret.old-keys.json").stat().st_mode & 0o777 == 0o600


def test_rotate_cli_and_public_endpoint_accept_old_links(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import warnings

    with warnings.catch_warnings():  # starlette 1.x asks for httpx2; httpx works the same here
        warnings.simplefilter("ignore")
        from starlette.testclient import TestClient

    from campaigns.store import Store
    from campaigns.web.public import create_public_app

    (tmp_path / "retain.toml").write_text(f'var_dir = "{tmp_path}"\n')
    monkeypatch.setenv("RETAIN_CONFIG", str(tmp_path / "retain.toml"))
    monkeypatch.delenv("RETAIN_SECRET_KEY", raising=False)
    s = Settings(var_dir=str(tmp_path))
    old_token = sign_token(s.resolved_secret_key(), UNSUBSCRIBE, customer=1, campaign="c")
    store = Store.open(f"sqlite:///{tmp_path / 'r.db'}")
    try:
        client = TestClient(create_public_app(store, s))  # a running `retain serve`
        assert client.get(f"/u/{old_token}").status_code == 200
        assert main(["secret", "rotate", "--keep-days", "5"]) == 0
        assert "back the keys up" in capsys.readouterr().out
        new_token = sign_token(s.resolved_secret_key(), UNSUBSCRIBE, customer=1, campaign="c")
        assert new_token != old_token
        # without a restart: links in mail already sent, and links signed with the new key, both work
        assert client.get(f"/u/{old_token}").status_code == 200
        assert client.get(f"/u/{new_token}").status_code == 200
        forged = sign_token(b"x" * 43, UNSUBSCRIBE, customer=1, campaign="c")
        assert client.get(f"/u/{forged}").status_code == 400
    finally:
        store.close()


def test_configured_key_cannot_be_rotated(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot rotate a key it does not own"):
        rotate(Settings(var_dir=str(tmp_path), secret_key="k" * 40), keep_days=1)


def test_backup_is_private_and_doctor_mark_follows_rotation(tmp_path: Path) -> None:
    s = Settings(var_dir=str(tmp_path / "var"))
    s.resolved_secret_key()
    assert not backed_up(s)
    dest = tmp_path / "keys.json"
    backup(s, dest)
    assert dest.stat().st_mode & 0o777 == 0o600
    assert json.loads(dest.read_text())["secret_key"].encode() == s.resolved_secret_key()
    assert backed_up(s)
    rotate(s, keep_days=1)
    assert not backed_up(s)  # the new key is not in the backup
    with pytest.raises(ConfigError, match="exists"):
        backup(s, dest)


def test_empty_key_never_verifies() -> None:
    token = sign_token(b"k" * 40, UNSUBSCRIBE, customer=1, campaign="c")
    with pytest.raises(TokenError):
        verify_token((b"",), token, UNSUBSCRIBE, 365)
