"""Settings: defaults < TOML file < KENSHIN_* environment < explicit overrides."""

from __future__ import annotations

from pathlib import Path

import pytest

from kenshin.server.settings import Settings, SettingsError, load_settings


def _toml(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "kenshin.toml"
    path.write_text(text)
    return path


def test_defaults() -> None:
    settings = load_settings(env={})
    assert settings.database_url == "sqlite:///./kenshin.db"
    assert (settings.host, settings.port) == ("127.0.0.1", 8080)
    assert settings.broker == "embedded" and settings.broker_endpoint is None
    assert settings.log_level == "info"
    assert settings.secret_key is None
    assert settings.secret_key_path == Path("kenshin-secret.key")


def test_env_over_toml_over_defaults(tmp_path: Path) -> None:
    config = _toml(
        tmp_path,
        'database_url = "sqlite:////srv/k.db"\nhost = "0.0.0.0"\n'
        'port = 9000\nlog_level = "debug"\n',
    )
    from_file = load_settings(config, env={})
    assert from_file.database_url == "sqlite:////srv/k.db"
    assert (from_file.host, from_file.port, from_file.log_level) == ("0.0.0.0", 9000, "debug")
    env = {"KENSHIN_PORT": "9100", "KENSHIN_LOG_LEVEL": "WARNING", "KENSHIN_OTHER_PART": "x"}
    both = load_settings(config, env=env)
    assert (both.host, both.port, both.log_level) == ("0.0.0.0", 9100, "warning")
    assert both.database_url == "sqlite:////srv/k.db"
    flags = load_settings(config, env=env, port=0, host=None)
    assert (flags.host, flags.port) == ("0.0.0.0", 0)


def test_the_file_can_be_named_by_the_environment(tmp_path: Path, monkeypatch) -> None:
    config = _toml(tmp_path, "port = 9200\n")
    monkeypatch.setenv("KENSHIN_CONFIG", str(config))
    monkeypatch.delenv("KENSHIN_PORT", raising=False)
    assert load_settings().port == 9200  # os.environ by default


def test_secret_key_settings(tmp_path: Path) -> None:
    settings = load_settings(
        env={"KENSHIN_SECRET_KEY_FILE": str(tmp_path / "k"), "KENSHIN_SECRET_KEY": "AAAA"}
    )
    assert settings.secret_key_path == tmp_path / "k"
    assert settings.secret_key is not None and settings.secret_key.get_secret_value() == "AAAA"
    assert "AAAA" not in repr(settings)
    beside_db = load_settings(env={"KENSHIN_DATABASE_URL": "sqlite:////var/lib/kenshin/k.db"})
    assert beside_db.secret_key_path == Path("/var/lib/kenshin/kenshin-secret.key")


def test_broker_urls() -> None:
    external = load_settings(env={"KENSHIN_BROKER": "mqtt://ingest:p%40ss@mqtt.example:1884"})
    endpoint = external.broker_endpoint
    assert endpoint is not None
    assert (endpoint.host, endpoint.port, endpoint.tls) == ("mqtt.example", 1884, False)
    assert (endpoint.username, endpoint.password) == ("ingest", "p@ss")
    assert "p@ss" not in repr(endpoint)
    tls = load_settings(env={"KENSHIN_BROKER": "mqtts://mqtt.example"}).broker_endpoint
    assert tls is not None and (tls.port, tls.tls, tls.username) == (8883, True, None)


@pytest.mark.parametrize(
    ("env", "words"),
    [
        ({"KENSHIN_PORT": "eighty"}, "KENSHIN_PORT"),
        ({"KENSHIN_PORT": "70000"}, "KENSHIN_PORT"),
        ({"KENSHIN_BROKER": "http://mqtt.example"}, "KENSHIN_BROKER"),
        ({"KENSHIN_BROKER": "mqtt://"}, "KENSHIN_BROKER"),
        ({"KENSHIN_LOG_LEVEL": "chatty"}, "KENSHIN_LOG_LEVEL"),
        ({"KENSHIN_DATABASE_URL": "mysql://x/y"}, "KENSHIN_DATABASE_URL"),
        ({"KENSHIN_DATABASE_URL": "not a url"}, "KENSHIN_DATABASE_URL"),
    ],
)
def test_bad_values_name_the_setting(env: dict[str, str], words: str) -> None:
    with pytest.raises(SettingsError, match=words):
        load_settings(env=env)


def test_bad_files_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="unknown setting"):
        load_settings(_toml(tmp_path, "prot = 80\n"), env={})
    with pytest.raises(SettingsError, match=r"kenshin\.toml"):
        load_settings(_toml(tmp_path, "port = \n"), env={})
    with pytest.raises(SettingsError, match="does not exist"):
        load_settings(tmp_path / "missing.toml", env={})


def test_settings_are_immutable() -> None:
    settings = Settings()
    with pytest.raises(ValueError):
        settings.port = 1  # type: ignore[misc]
