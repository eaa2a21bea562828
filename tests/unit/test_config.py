"""config.yaml: typos and bad values are caught with the key named; secrets stay secret."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from pydantic import BaseModel

from bot.cli import main
from bot.config import Config, ConfigError, load_config, secret_env_names

REPO = Path(__file__).resolve().parents[2]

MINIMAL = {
    "homeserver": {"url": "http://127.0.0.1:8008"},
    "bot": {"user_id": "@neighborwatch:localhost", "password": "s3cret-pass"},
    "stations": [
        {
            "id": "hq",
            "name": "Hongqiao",
            "officers": ["@wang:police.example"],
            "supervisors": ["@zhao:district.example"],
        }
    ],
}


def write(tmp_path: Path, data: object) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return path


def with_(**changes: object) -> dict[str, object]:
    return {**MINIMAL, **changes}


def _keys(model: type[BaseModel], prefix: str = "") -> set[str]:
    keys = set()
    for name, field in model.model_fields.items():
        keys.add(prefix + name)
        if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel):
            keys |= _keys(field.annotation, f"{prefix}{name}.")
    return keys


def _raw_keys(data: dict[str, object], prefix: str = "") -> set[str]:
    keys = set()
    for name, value in data.items():
        keys.add(prefix + name)
        if isinstance(value, dict):
            keys |= _raw_keys(value, f"{prefix}{name}.")
    return keys


def test_the_example_config_is_valid_and_shows_every_key() -> None:
    config = load_config(REPO / "config.example.yaml", environ={})
    raw = yaml.safe_load((REPO / "config.example.yaml").read_text(encoding="utf-8"))
    assert _raw_keys(raw) == _keys(Config), "config.example.yaml must show every key"
    assert config.timezone == "Asia/Shanghai"


def test_defaults_are_filled_in(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, MINIMAL), environ={})
    assert config.language == "zh"
    assert config.timezone == "Asia/Shanghai"
    assert config.command_prefix == "!"
    assert config.sync.timeline_limit >= 50
    assert config.officers() == {"@wang:police.example"}
    assert config.supervisors() == {"@zhao:district.example"}


def test_a_relative_data_dir_is_relative_to_the_config_file(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, with_(data_dir="var/data")), environ={})
    assert config.data_dir == (tmp_path / "var" / "data").resolve()


def test_the_password_can_come_from_the_environment(tmp_path: Path) -> None:
    raw = with_(bot={"user_id": "@nw:localhost"})
    env = {"NEIGHBORWATCH_BOT_PASSWORD": "from-env"}
    config = load_config(write(tmp_path, raw), environ=env)
    assert config.bot.password is not None
    assert config.bot.password.get_secret_value() == "from-env"


def test_every_secret_has_an_environment_variable() -> None:
    assert "NEIGHBORWATCH_BOT_PASSWORD" in secret_env_names()


def test_check_config_prints_the_effective_config_without_secrets(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["check-config", "-c", str(write(tmp_path, MINIMAL))]) == 0
    out = capsys.readouterr().out
    assert "s3cret-pass" not in out
    printed = yaml.safe_load(out)
    assert printed["bot"]["password"] == "**********"
    assert printed["timezone"] == "Asia/Shanghai"
    assert printed["stations"][0]["officers"] == ["@wang:police.example"]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (with_(timezon="Asia/Shanghai"), "timezon: unknown key (did you mean 'timezone'?)"),
        (
            with_(timezone="Mars/Olympus"),
            "timezone: 'Mars/Olympus' — not an IANA time zone name",
        ),
        (with_(language="fr"), "language: 'fr' — Input should be 'zh' or 'en'"),
        (
            with_(bot={"user_id": "wang", "password": "x"}),
            "bot.user_id: 'wang' — not a Matrix user id",
        ),
        (
            with_(stations=[{"id": "hq", "name": "A", "officer": []}]),
            "stations.0.officer: unknown key (did you mean 'officers'?)",
        ),
        (
            with_(sync={"timeline_limit": 10}),
            "sync.timeline_limit: 10 — Input should be greater than or equal to 50",
        ),
        ({"bot": MINIMAL["bot"]}, "homeserver: required key is missing"),
    ],
)
def test_config_errors_name_the_key_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], raw: object, expected: str
) -> None:
    assert main(["check-config", "-c", str(write(tmp_path, raw))]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    assert expected in lines[0]


def test_a_bad_password_value_is_not_echoed(tmp_path: Path) -> None:
    raw = with_(bot={"user_id": "@nw:localhost", "password": ["hunter2"]})
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, raw), environ={})
    assert "hunter2" not in str(err.value)
    assert "bot.password" in str(err.value)


def test_missing_file_and_broken_yaml_are_clear(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file"):
        load_config(tmp_path / "nope.yaml", environ={})
    broken = tmp_path / "broken.yaml"
    broken.write_text("homeserver: [\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(broken, environ={})


def test_duplicate_station_ids_are_refused(tmp_path: Path) -> None:
    twice = [{"id": "hq", "name": "A"}, {"id": "hq", "name": "B"}]
    with pytest.raises(ConfigError, match=r"stations: .*used twice: hq"):
        load_config(write(tmp_path, with_(stations=twice)), environ={})


def test_the_console_entry_point_runs_check_config(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "bot", "check-config", "-c", str(write(tmp_path, with_(x=1)))],
        capture_output=True,
        text=True,
        cwd=REPO,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr.strip().startswith("config error: x: unknown key")
