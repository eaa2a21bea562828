"""``config.yaml`` as pydantic models.

* unknown keys are errors (``extra="forbid"``), with the closest valid key suggested;
* secrets are ``SecretStr`` and every one of them can come from the environment
  instead: ``NEIGHBORWATCH_`` + its path in upper case, e.g. ``bot.password`` →
  ``NEIGHBORWATCH_BOT_PASSWORD``;
* errors name the key, the bad value and what is allowed, one line each.
"""

from __future__ import annotations

import difflib
import os
import re
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
)

from bot.domain.org import DEFAULT_AUDIENCES, parse_duration_ms

ENV_PREFIX = "NEIGHBORWATCH_"
_MXID = re.compile(r"^@[^:\s]+:[A-Za-z0-9.\-\[\]:]+$")
_SLUG = re.compile(r"^[a-z0-9][a-z0-9-]{0,31}$")


class ConfigError(Exception):
    """The config file is missing, unreadable or invalid; ``lines`` says what and where."""

    def __init__(self, lines: list[str]) -> None:
        super().__init__("\n".join(lines))
        self.lines = lines


def _matrix_id(value: str) -> str:
    if not _MXID.match(value):
        raise ValueError("not a Matrix user id; write it like @name:server.example")
    return value


_NOT_A_ZONE = "not an IANA time zone name; use one like Asia/Shanghai or Europe/Berlin"


def _timezone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(_NOT_A_ZONE) from None
    if value not in available_timezones() and value != "UTC":
        raise ValueError(_NOT_A_ZONE)
    return value


MatrixId = Annotated[str, AfterValidator(_matrix_id)]
TimeZoneName = Annotated[str, AfterValidator(_timezone)]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class HomeserverConfig(_Section):
    url: str = Field(description="client-server API base URL of the bot's homeserver")

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not re.match(r"^https?://[^/\s]+", value):
            raise ValueError("not a URL; write it like http://127.0.0.1:8008")
        return value.rstrip("/")


class BotAccount(_Section):
    user_id: MatrixId
    password: SecretStr | None = Field(
        default=None,
        description="used once to log in (and again only if the token is revoked)",
    )
    device_name: str = "neighborwatch"


def _cron(value: str) -> str:
    from apscheduler.triggers.cron import CronTrigger

    try:
        CronTrigger.from_crontab(value)
    except ValueError:
        raise ValueError(
            "not a cron schedule; write 'minute hour day month weekday', e.g. '0 8 * * mon'"
        ) from None
    return value


Cron = Annotated[str, AfterValidator(_cron)]


class ScheduleConfig(_Section):
    daily: Cron = Field(default="0 8 * * *", description="when the daily digest is sent")
    weekly: Cron = Field(default="0 8 * * mon", description="when the weekly digest is sent")


class Station(_Section):
    id: str
    name: str
    district: str | None = None
    case_prefix: str | None = Field(
        default=None, description="case numbers start with it (default: from the id)"
    )
    officers: list[MatrixId] = Field(default_factory=list)
    supervisors: list[MatrixId] = Field(default_factory=list)
    schedule: ScheduleConfig | None = Field(
        default=None, description="this station's digest times (default: digests.schedule)"
    )

    @field_validator("case_prefix")
    @classmethod
    def _prefix(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"[A-Z][A-Z0-9]{0,7}", value):
            raise ValueError("not allowed; use 1 to 8 capital letters or digits, e.g. HQ")
        return value

    @field_validator("id", "district")
    @classmethod
    def _slug(cls, value: str | None) -> str | None:
        if value is not None and not _SLUG.match(value):
            raise ValueError("not allowed; use lower-case letters, digits and '-' (≤ 32)")
        return value


_ROOM_REF = re.compile(r"^(#[^:\s]+:[A-Za-z0-9.\-\[\]:]+|![^\s]+)$")


class District(_Section):
    id: str
    name: str
    supervisors: list[MatrixId] = Field(default_factory=list)
    schedule: ScheduleConfig | None = None
    room: str | None = Field(
        default=None,
        description="post this bot's station sections into this room (alias or id, on any "
        "server, e.g. the district's) instead of a digest room of its own",
    )

    @field_validator("room")
    @classmethod
    def _room(cls, value: str | None) -> str | None:
        if value is not None and not _ROOM_REF.match(value):
            raise ValueError(
                "not a room alias or id; write it like #changning-digest:district.example"
            )
        return value

    @field_validator("id")
    @classmethod
    def _slug(cls, value: str) -> str:
        if not _SLUG.match(value):
            raise ValueError("not allowed; use lower-case letters, digits and '-' (≤ 32)")
        return value


class DigestsConfig(_Section):
    schedule: ScheduleConfig = ScheduleConfig()
    stale_unacknowledged_hours: int = Field(default=24, ge=1, le=24 * 30)
    stale_open_days: int = Field(default=7, ge=1, le=365)
    officers_read_only: bool = Field(
        default=False, description="invite the station's officers to its digest room, read-only"
    )
    chart: bool = Field(default=True, description="attach a 14-day chart to the daily digest")
    late_after_minutes: int = Field(default=10, ge=1, le=1440)
    nudges: Literal["dm", "officers_room", "off"] = "dm"
    nudge_at: Cron = "0 9 * * *"


class RetentionConfig(_Section):
    closed_case_days: int = Field(default=365, ge=30, le=3650)
    run_at: Cron = "30 3 * * *"
    dry_run: bool = Field(default=False, description="only report what would be anonymised")


class TimersConfig(_Section):
    tick_seconds: float = Field(
        default=60, ge=0.2, le=3600, description="how often time-driven work is checked"
    )


class SyncConfig(_Section):
    timeline_limit: int = Field(default=50, ge=50, le=1000)
    timeout_ms: int = Field(default=30_000, ge=0, le=120_000)
    backoff_max_s: float = Field(default=60.0, gt=0, le=600)


class OutboxConfig(_Section):
    concurrency: int = Field(default=8, ge=1, le=64)
    max_attempts: int = Field(default=10, ge=1, le=1000)


class RoomsConfig(_Section):
    encrypted: bool = Field(default=False, description="create managed rooms end-to-end encrypted")
    audiences: list[str] = Field(
        default_factory=lambda: list(DEFAULT_AUDIENCES),
        description="the groups an officer can keep per neighbourhood",
    )

    @field_validator("audiences")
    @classmethod
    def _audiences(cls, values: list[str]) -> list[str]:
        bad = [v for v in values if not _SLUG.match(v) or v == "officers"]
        if bad:
            raise ValueError(
                f"not allowed: {', '.join(bad)}; use lower-case words (not 'officers')"
            )
        if not values:
            raise ValueError("at least one audience is needed")
        return values


class OnboardingConfig(_Section):
    code_expires: str = Field(default="7d", description="default lifetime of a join code")
    code_uses: int = Field(default=1, ge=1, le=1000)
    welcome: bool = Field(default=True, description="welcome new members by name (per room)")
    stranger_messages_per_hour: int = Field(default=10, ge=1, le=1000)
    bad_codes_per_hour: int = Field(default=5, ge=1, le=100)

    @field_validator("code_expires")
    @classmethod
    def _duration(cls, value: str) -> str:
        if parse_duration_ms(value) is None:
            raise ValueError("not a duration; write it like 30m, 12h, 7d or 2w")
        return value


class NoticesConfig(_Section):
    alert_expires: str = Field(default="3d", description="default lifetime of an alert")
    wanted_expires: str = Field(default="30d", description="default lifetime of a wanted notice")
    wanted_scope: str = Field(
        default="guards",
        description="default targets of !wanted: an audience, a neighbourhood, a room or station",
    )
    remind_before: str = Field(default="5d", description="remind the officer before expiry")
    redact_on_close: bool = Field(
        default=True, description="remove wanted photos from the rooms when a notice closes"
    )
    max_photo_mb: float = Field(default=10, gt=0, le=100)

    @field_validator("alert_expires", "wanted_expires", "remind_before")
    @classmethod
    def _duration(cls, value: str) -> str:
        if parse_duration_ms(value) is None:
            raise ValueError("not a duration; write it like 12h, 3d or 30d")
        return value


class E2eeConfig(_Section):
    trust: Literal["cross-signed", "tofu", "all"] = Field(
        default="cross-signed",
        description="which devices get room keys: cross-signed by their owner, all devices of "
        "the identity first seen (tofu), or all",
    )
    keys_file: Path | None = Field(
        default=None, description="the bot's cross-signing keys (default: in the data directory)"
    )
    cross_sign: bool = Field(
        default=True, description="cross-sign the bot's device (only switch off to diagnose)"
    )
    undecryptable_timeout: str = Field(
        default="10m",
        description="after this, the sender of an unreadable message is asked to send it again",
    )

    @field_validator("undecryptable_timeout")
    @classmethod
    def _duration(cls, value: str) -> str:
        if parse_duration_ms(value) is None:
            raise ValueError("not a duration; write it like 30m, 2h")
        return value


class LoggingConfig(_Section):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"


class Config(_Section):
    homeserver: HomeserverConfig
    bot: BotAccount
    data_dir: Path = Path("data")
    language: Literal["zh", "en"] = "zh"
    timezone: TimeZoneName = "Asia/Shanghai"
    command_prefix: str = "!"
    stations: list[Station] = Field(default_factory=list)
    sync: SyncConfig = SyncConfig()
    outbox: OutboxConfig = OutboxConfig()
    rooms: RoomsConfig = RoomsConfig()
    onboarding: OnboardingConfig = OnboardingConfig()
    notices: NoticesConfig = NoticesConfig()
    districts: list[District] = Field(default_factory=list)
    digests: DigestsConfig = DigestsConfig()
    retention: RetentionConfig = RetentionConfig()
    timers: TimersConfig = TimersConfig()
    e2ee: E2eeConfig = E2eeConfig()
    logging: LoggingConfig = LoggingConfig()

    @field_validator("command_prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        if len(value) != 1 or value.isalnum() or value.isspace():
            raise ValueError("not allowed; use one punctuation character such as ! or .")
        return value

    @field_validator("stations")
    @classmethod
    def _unique_stations(cls, stations: list[Station]) -> list[Station]:
        ids = [station.id for station in stations]
        twice = sorted({i for i in ids if ids.count(i) > 1})
        if twice:
            raise ValueError(f"station ids must be unique; used twice: {', '.join(twice)}")
        return stations

    def officers(self) -> set[str]:
        return {user for station in self.stations for user in station.officers}

    def station(self, station_id: str | None) -> Station | None:
        return next((s for s in self.stations if s.id == station_id), None)

    def stations_of(self, user_id: str) -> list[Station]:
        """The stations where ``user_id`` is an officer."""
        return [s for s in self.stations if user_id in s.officers]

    def supervised_by(self, user_id: str) -> list[Station]:
        return [s for s in self.stations if user_id in s.supervisors]

    def district(self, district_id: str | None) -> District | None:
        return next((d for d in self.districts if d.id == district_id), None)

    def district_ids(self) -> list[str]:
        """Districts named by stations or configured (a district needs no entry of its own)."""
        named = [s.district for s in self.stations if s.district]
        return list(dict.fromkeys([*(d.id for d in self.districts), *named]))

    def stations_in(self, district_id: str) -> list[Station]:
        return [s for s in self.stations if s.district == district_id]

    def schedule_of(
        self, station: Station | None = None, district: str | None = None
    ) -> ScheduleConfig:
        if station is not None and station.schedule is not None:
            return station.schedule
        found = self.district(district)
        if found is not None and found.schedule is not None:
            return found.schedule
        return self.digests.schedule

    def supervisors(self) -> set[str]:
        return {user for station in self.stations for user in station.supervisors}


def load_config(path: str | Path, environ: Mapping[str, str] | None = None) -> Config:
    """Read, apply environment overrides for secrets, validate.

    A relative ``data_dir`` is taken relative to the config file's folder, so the
    bot finds its data wherever it is started from.
    """
    env = os.environ if environ is None else environ
    file = Path(path)
    try:
        raw = yaml.safe_load(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError([f"{file}: no such file (copy config.example.yaml to start)"]) from None
    except OSError as err:
        raise ConfigError([f"{file}: cannot read: {err.strerror}"]) from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise ConfigError([f"{file}{where}: not valid YAML"]) from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError([f"{file}: the top level must be a mapping of keys to values"])
    _apply_secret_overrides(raw, Config, env)
    try:
        config = Config.model_validate(raw)
    except ValidationError as err:
        raise ConfigError([_describe(e) for e in err.errors()]) from None
    if not config.data_dir.is_absolute():
        config = config.model_copy(update={"data_dir": (file.parent / config.data_dir).resolve()})
    return config


def secret_env_names(model: type[BaseModel] = Config, prefix: tuple[str, ...] = ()) -> list[str]:
    """Every environment variable that can supply a secret (documented in the README)."""
    names: list[str] = []
    for name, field in model.model_fields.items():
        path = (*prefix, name)
        sub = _submodel(field.annotation)
        if sub is not None:
            names.extend(secret_env_names(sub, path))
        elif _is_secret(field.annotation):
            names.append(ENV_PREFIX + "_".join(path).upper())
    return names


def _apply_secret_overrides(
    raw: dict[str, Any],
    model: type[BaseModel],
    env: Mapping[str, str],
    prefix: tuple[str, ...] = (),
) -> None:
    for name, field in model.model_fields.items():
        path = (*prefix, name)
        sub = _submodel(field.annotation)
        if sub is not None:
            child = raw.get(name)
            if child is None and any(
                n.startswith(ENV_PREFIX + "_".join(path).upper() + "_") and n in env
                for n in secret_env_names(sub, path)
            ):
                child = raw[name] = {}
            if isinstance(child, dict):
                _apply_secret_overrides(child, sub, env, path)
        elif _is_secret(field.annotation):
            value = env.get(ENV_PREFIX + "_".join(path).upper())
            if value:
                raw[name] = value


def _submodel(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return None


def _is_secret(annotation: Any) -> bool:
    if annotation is SecretStr:
        return True
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        return SecretStr in typing.get_args(annotation)
    return False


def _describe(error: Any) -> str:
    """One line: the key, the bad value, what is allowed (secret values are never shown)."""
    loc = [str(part) for part in error["loc"]]
    key = ".".join(loc) or "(top level)"
    kind = error["type"]
    if kind == "extra_forbidden":
        return f"{key}: unknown key{_suggest(loc)}"
    if kind == "missing":
        return f"{key}: required key is missing"
    message = str(error["msg"]).removeprefix("Value error, ")
    value = error.get("input")
    secret_path = ENV_PREFIX + "_".join(p for p in loc if not p.isdigit()).upper()
    if isinstance(value, dict | list) or secret_path in secret_env_names():
        return f"{key}: {message}"
    return f"{key}: {value!r} — {message}"


def _suggest(loc: list[str]) -> str:
    """For a typo'd key, name the closest key the section does accept."""
    model: type[BaseModel] = Config
    for part in loc[:-1]:
        if part.isdigit():
            continue
        field = model.model_fields.get(part)
        if field is None:
            return ""
        annotation = field.annotation
        args = typing.get_args(annotation)
        sub = _submodel(annotation) or next((a for a in args if _submodel(a)), None)
        if sub is None:
            return ""
        model = sub
    match = difflib.get_close_matches(loc[-1], list(model.model_fields), n=1, cutoff=0.6)
    allowed = ", ".join(model.model_fields)
    if match:
        return f" (did you mean {match[0]!r}?)"
    return f" (allowed here: {allowed})"


def render_effective_config(config: Config) -> str:
    """The config as the bot will use it, defaults filled in, secrets redacted."""
    data = config.model_dump(mode="json")
    return yaml.safe_dump(data, allow_unicode=True, sort_keys=False)
