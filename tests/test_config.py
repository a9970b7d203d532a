"""Settings: file, environment overrides, and clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from remotehands.config import load_settings
from remotehands.errors import ConfigError


def test_defaults(tmp_path):
    s = load_settings(environ={}, cwd=tmp_path)
    assert s.executor == "local" and s.ticket_system == "builtin"
    assert s.inventory == Path("inventory")
    assert s.resolved_db_url().startswith("sqlite:///") and s.resolved_db_url().endswith(
        "remotehands/remotehands.db"
    )


def test_file_then_environment(tmp_path):
    (tmp_path / "remotehands.toml").write_text(
        'db_url = "sqlite:////tmp/x.db"\ninventory = "inv"\nworkers = 2\n'
    )
    s = load_settings(environ={}, cwd=tmp_path)
    assert s.db_url == "sqlite:////tmp/x.db" and s.workers == 2 and s.inventory == tmp_path / "inv"
    s = load_settings(environ={"RH_WORKERS": "7", "RH_INVENTORY": "/srv/inv"}, cwd=tmp_path)
    assert s.workers == 7 and s.inventory == Path("/srv/inv")


def test_rh_config_names_the_file(tmp_path):
    cfg = tmp_path / "elsewhere.toml"
    cfg.write_text('executor = "local"\n')
    assert load_settings(environ={"RH_CONFIG": str(cfg)}, cwd=tmp_path).source == str(cfg)
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(environ={"RH_CONFIG": str(tmp_path / "missing.toml")}, cwd=tmp_path)


@pytest.mark.parametrize(
    ("text", "env", "needle"),
    [
        ("db_url = \n", {}, "not valid TOML"),
        ('dburl = "x"\n', {}, "unknown setting(s) dburl"),
        ("", {"RH_WORKERS": "zero"}, "setting workers"),
        ("", {"RH_EXECUTOR": "threads"}, "setting executor"),
    ],
)
def test_bad_settings_name_the_field(tmp_path, text, env, needle):
    (tmp_path / "remotehands.toml").write_text(text)
    with pytest.raises(ConfigError) as err:
        load_settings(environ=env, cwd=tmp_path)
    assert needle in str(err.value)
