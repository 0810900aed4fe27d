"""Settings: environment over retain.toml over defaults, with precise errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from campaigns.config import Settings, load_settings
from campaigns.errors import ConfigError


def test_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    s = load_settings(env={})
    assert s.resolved_database_url() == "sqlite:///var/retain.db"
    assert s.resolved_sender() == "outbox://var/outbox"
    assert s.holdout_share == 0.10


def test_env_beats_file_beats_default(tmp_path: Path) -> None:
    cfg = tmp_path / "retain.toml"
    cfg.write_text(
        'database_url = "sqlite:///file.db"\n[shop]\nshop_name = "Paper & Pine"\nholdout_share = 0.2\n'
    )
    s = load_settings(cfg, env={"RETAIN_DATABASE_URL": "sqlite:///env.db"})
    assert s.database_url == "sqlite:///env.db"
    assert s.shop_name == "Paper & Pine"
    assert s.holdout_share == 0.2
    assert load_settings(cfg, env={}, database_url="sqlite:///flag.db").database_url == "sqlite:///flag.db"


@pytest.mark.parametrize(
    ("text", "env", "message"),
    [
        ("colour = 'red'\n", {}, "unknown setting 'colour'"),
        ("frequency_cap = 'x'\n", {}, "setting 'frequency_cap' must be int"),
        ("", {"RETAIN_SOFT_OPT_IN": "maybe"}, "environment variable RETAIN_SOFT_OPT_IN"),
        ("shop_timezone = 'Mars/Olympus'\n", {}, "unknown timezone"),
        ("quiet_hours = '9pm'\n", {}, "quiet_hours"),
        ("holdout_share = 1.5\n", {}, "holdout_share"),
        ("not toml = = \n", {}, "not valid TOML"),
    ],
)
def test_invalid_settings(tmp_path: Path, text: str, env: dict[str, str], message: str) -> None:
    cfg = tmp_path / "retain.toml"
    cfg.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_settings(cfg, env=env)


def test_secrets_are_masked_and_generated_key_is_stable(tmp_path: Path) -> None:
    s = Settings(smtp_password="hunter2", var_dir=str(tmp_path))
    assert "hunter2" not in repr(s)
    assert s.public_dict()["smtp_password"] == "***"
    key = s.resolved_secret_key()
    assert len(key) >= 32 and s.resolved_secret_key() == key
    assert (tmp_path / "secret.key").stat().st_mode & 0o777 == 0o600


def test_missing_explicit_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "nope.toml", env={})
