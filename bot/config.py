"""Settings: read once from the environment at start, validated, then frozen."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, unquote_plus, urlsplit, urlunsplit

from .catalogue import CATALOGUE
from .models import LEGACY_MODEL
from .quota import ServerLimits

DEFAULT_API_BASE_URL = "https://api.aimlapi.com"


class ConfigError(Exception):
    """A setting is missing or invalid; the message names the variable."""


class Secret:
    """A string that never shows itself in a repr, a log line or an f-string."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('********')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


class DatabaseUrl(Secret):
    """A postgresql:// URL: its password never shows, but the rest of it can be named in a message."""

    __slots__ = ()

    @property
    def secrets(self) -> tuple[str, ...]:
        """Every password in the URL (after the user, or as a query parameter), as written and as decoded: what a
        message or a log line must never show."""
        return url_secrets(self.reveal())

    def shown(self) -> str:
        """The URL with its passwords hidden."""
        return hide_password(self.reveal())

    def hidden_in(self, text: str) -> str:
        """`text` (an error's message, say) with any of the URL's passwords replaced by ***."""
        for secret in sorted(self.secrets, key=len, reverse=True):
            text = text.replace(secret, "***")
        return text

    def __repr__(self) -> str:
        return f"DatabaseUrl({self.shown()!r})"

    __str__ = __repr__


# Query parameters of a PostgreSQL URL that carry a secret (asyncpg, like libpq, reads both).
_SECRET_PARAMETERS = frozenset({"password", "sslpassword"})


def _query_pairs(query: str) -> list[tuple[str, str, str]]:
    """The query's parameters as (name decoded, the pair as written, its value as written)."""
    pairs = []
    for pair in query.split("&") if query else []:
        name, _, value = pair.partition("=")
        pairs.append((unquote_plus(name), pair, value))
    return pairs


def url_secrets(url: str) -> tuple[str, ...]:
    """The passwords a URL holds, each as written and as decoded (a log line may show either)."""
    try:
        parts = urlsplit(url)
        written = [parts.password or ""]
    except ValueError:
        return ()
    written += [value for name, _, value in _query_pairs(parts.query) if name in _SECRET_PARAMETERS]
    found = {form for value in written for form in (value, unquote(value), unquote_plus(value)) if form}
    return tuple(sorted(found))


def hide_password(url: str) -> str:
    """A URL as it may be shown: any password in it (after the user, or as a query parameter) replaced by ***."""
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return "(a URL that can't be read)"
    netloc = parts.netloc
    if password is not None:
        userinfo, _, hosts = netloc.rpartition("@")
        netloc = f"{userinfo.partition(':')[0]}:***@{hosts}"
    query = "&".join(
        f"{pair.partition('=')[0]}=***" if name in _SECRET_PARAMETERS else pair
        for name, pair, _ in _query_pairs(parts.query)
    )
    return urlunsplit(parts._replace(netloc=netloc, query=query))


@dataclass(frozen=True)
class Settings:
    discord_token: Secret = field(repr=False)
    aiml_api_key: Secret = field(repr=False)
    api_base_url: str = DEFAULT_API_BASE_URL
    database_path: Path = Path("data/bot.sqlite3")
    # A PostgreSQL server holding everything instead of the SQLite file (the heartbeat stays beside DATABASE_PATH).
    database_url: DatabaseUrl | None = field(default=None, repr=False)
    poll_interval_seconds: float = 10.0
    generation_timeout_minutes: float = 30.0
    dev_guild_id: int | None = None
    log_level: str = "INFO"
    # Points discord.py at another Discord REST/gateway host (a proxy, or a fake Discord in tests).
    discord_api_base_url: str | None = None
    # Limits of a server whose moderators have not set their own (0 = no limit).
    default_limits: ServerLimits = field(default_factory=ServerLimits)
    # The operator's cap on videos per day across all servers (0 = no cap).
    global_daily_limit: int = 0
    # The models offered, the default first: "legacy" (the /luma-ai endpoints) or models of the maintained
    # /v2/video/generations endpoint.
    luma_models: tuple[str, ...] = (LEGACY_MODEL,)
    # Log a warning (once an hour) when the account balance falls under this; 0 = never.
    low_balance_warning: float = 5_000_000
    # Where Prometheus metrics are served; None (the default) serves none.
    metrics_port: int | None = None
    metrics_host: str = "127.0.0.1"
    # A create whose answer never came is first looked for in the account's list after this long, and for this long.
    reconcile_first_check_seconds: float = 30.0
    reconcile_window_minutes: float = 60.0
    # The operator's cap on generations running at the API at once, across all servers (0 = no cap); more wait in
    # the queue, and a job waits at most this long before it is dropped.
    max_running_generations: int = 0
    queue_timeout_minutes: float = 60.0
    # The gateway shards this process runs: all of `shard_count` unless `shard_ids` names some; None = as many as
    # Discord recommends, all in this process.
    shard_count: int | None = None
    shard_ids: tuple[int, ...] | None = None

    @property
    def discord_share(self) -> float:
        """This process's share of the bot's requests to Discord: its part of the shards. Discord's global limit is
        per bot, whatever the number of processes, so each paces itself to its share."""
        if self.shard_ids is None or not self.shard_count:
            return 1.0
        return len(self.shard_ids) / self.shard_count

    @property
    def syncs_commands(self) -> bool:
        """Only the process with shard 0 syncs the slash commands: one sync, whatever the number of processes."""
        return self.shard_ids is None or 0 in self.shard_ids

    @property
    def luma_model(self) -> str:
        """The default model: what a video is made with unless the member picks another."""
        return self.luma_models[0]

    @property
    def generation_timeout_seconds(self) -> float:
        return self.generation_timeout_minutes * 60

    @property
    def queue_timeout_seconds(self) -> float:
        return self.queue_timeout_minutes * 60


def _required(env: Mapping[str, str], name: str) -> str:
    value = env.get(name, "").strip()
    if not value:
        raise ConfigError(f"{name} is required but not set (see .env.example)")
    return value


def _positive_float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from None
    if not value > 0 or value == float("inf"):
        raise ConfigError(f"{name} must be a positive number, got {raw!r}")
    return value


def _models(env: Mapping[str, str]) -> tuple[str, ...]:
    """LUMA_MODELS (comma-separated, the default first), or the one-model LUMA_MODEL, or legacy."""
    name = "LUMA_MODELS" if env.get("LUMA_MODELS", "").strip() else "LUMA_MODEL"
    raw = env.get(name, "").strip() or LEGACY_MODEL
    models = tuple(part.strip() for part in raw.split(","))
    known = ", ".join(CATALOGUE)
    for model in models:
        if model not in CATALOGUE:
            raise ConfigError(f"{name} must list models among {known}; {model!r} is not one of them")
    if len(set(models)) != len(models):
        raise ConfigError(f"{name} names a model twice: {raw!r}")
    return models


def _bounded_float(env: Mapping[str, str], name: str, default: float, maximum: float) -> float:
    value = _positive_float(env, name, default)
    if value > maximum:
        raise ConfigError(f"{name} must be at most {maximum:g}, got {env[name].strip()!r}")
    return value


def _non_negative_int(env: Mapping[str, str], name: str) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return 0
    if not raw.isdigit():
        raise ConfigError(f"{name} must be a whole number, 0 or more (0 = no limit), got {raw!r}")
    return int(raw)


def _http_url(env: Mapping[str, str], name: str, default: str | None) -> str | None:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    parsed = urlsplit(raw)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise ConfigError(f"{name} must be an http(s) URL, got {raw!r}")
    return raw.rstrip("/")


def database_path(env: Mapping[str, str]) -> Path:
    """DATABASE_PATH: the SQLite file (and the folder of the heartbeat)."""
    raw = env.get("DATABASE_PATH", "").strip() or "data/bot.sqlite3"
    path = Path(raw).expanduser()
    if path.exists() and path.is_dir():
        raise ConfigError(f"DATABASE_PATH must be a file, but {raw!r} is a folder")
    return path


def database_url(env: Mapping[str, str]) -> DatabaseUrl | None:
    """DATABASE_URL: a PostgreSQL server's postgresql://user:password@host:port/database, or None for SQLite."""
    raw = env.get("DATABASE_URL", "").strip()
    if not raw:
        return None
    shown = hide_password(raw) if "://" in raw else "(not a URL)"
    try:
        parts = urlsplit(raw)
    except ValueError as error:  # a bracket left open around an IPv6 address
        raise ConfigError(f"DATABASE_URL can't be read as a URL: {error}") from None
    if parts.scheme not in ("postgresql", "postgres"):
        raise ConfigError(f"DATABASE_URL must be a postgresql:// URL, got {shown!r}")
    _check_hosts(parts.netloc.rpartition("@")[2], shown)
    if not parts.path.strip("/") and "dbname=" not in parts.query:
        raise ConfigError(f"DATABASE_URL must name a database after the host, as in .../videos, got {shown!r}")
    return DatabaseUrl(raw)


def _check_hosts(hosts: str, shown: str) -> None:
    """The hosts of DATABASE_URL: one, or several separated by commas (asyncpg tries them in turn), each with an
    optional port."""
    for host in hosts.split(","):
        try:
            urlsplit(f"//{host}").port  # noqa: B018  (reading it checks it)
        except ValueError:
            raise ConfigError(
                f"DATABASE_URL has a port that is not a number from 0 to 65535 ({host!r}): {shown!r}"
            ) from None


def _port(env: Mapping[str, str], name: str) -> int | None:
    raw = env.get(name, "").strip()
    if not raw:
        return None
    if not raw.isdigit() or not 1 <= int(raw) <= 65535:
        raise ConfigError(f"{name} must be a port number from 1 to 65535, got {raw!r}")
    return int(raw)


def _shard_count(env: Mapping[str, str]) -> int | None:
    raw = env.get("SHARD_COUNT", "").strip()
    if not raw:
        return None
    if not raw.isdigit() or int(raw) < 1:
        raise ConfigError(f"SHARD_COUNT must be a whole number, 1 or more, got {raw!r}")
    return int(raw)


def _shard_ids(env: Mapping[str, str], shard_count: int | None) -> tuple[int, ...] | None:
    """SHARD_IDS: shard numbers and ranges, e.g. `0-3` or `4,5` or `0-1,6`, all under SHARD_COUNT."""
    raw = env.get("SHARD_IDS", "").strip()
    if not raw:
        return None
    if shard_count is None:
        raise ConfigError("SHARD_IDS needs SHARD_COUNT (the total number of shards across every process)")
    ids: list[int] = []
    for part in (piece.strip() for piece in raw.split(",")):
        low, dash, high = part.partition("-")
        if not low.strip().isdigit() or (dash and not high.strip().isdigit()):
            raise ConfigError(f"SHARD_IDS must list shard numbers or ranges such as 0-3 or 4,5; got {raw!r}")
        first, last = int(low), int(high) if dash else int(low)
        if first > last:
            raise ConfigError(f"SHARD_IDS has a range that runs backwards: {part!r}")
        ids.extend(range(first, last + 1))
    if max(ids) >= shard_count:
        raise ConfigError(
            f"SHARD_IDS must be under SHARD_COUNT ({shard_count}): shards are numbered from 0, got {raw!r}"
        )
    if len(set(ids)) != len(ids):
        raise ConfigError(f"SHARD_IDS names a shard twice: {raw!r}")
    return tuple(sorted(ids))


def load_settings(env: Mapping[str, str]) -> Settings:
    """Build the settings from an environment mapping, or raise ConfigError naming the bad variable."""
    discord_token = _required(env, "DISCORD_TOKEN")
    aiml_api_key = _required(env, "AIML_API_KEY")
    api_base_url = _http_url(env, "AIML_API_BASE_URL", DEFAULT_API_BASE_URL)
    assert api_base_url is not None

    dev_guild_raw = env.get("DEV_GUILD_ID", "").strip()
    dev_guild_id: int | None = None
    if dev_guild_raw:
        if not dev_guild_raw.isdigit() or int(dev_guild_raw) <= 0:
            raise ConfigError(f"DEV_GUILD_ID must be a server id (digits), got {dev_guild_raw!r}")
        dev_guild_id = int(dev_guild_raw)

    log_level = (env.get("LOG_LEVEL", "").strip() or "INFO").upper()
    if not isinstance(logging.getLevelName(log_level), int):
        raise ConfigError(f"LOG_LEVEL must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL, got {log_level!r}")

    luma_models = _models(env)
    shard_count = _shard_count(env)
    low_balance_raw = env.get("LOW_BALANCE_WARNING", "").strip()
    try:
        low_balance_warning = float(low_balance_raw) if low_balance_raw else 5_000_000.0
    except ValueError:
        raise ConfigError(f"LOW_BALANCE_WARNING must be a number, got {low_balance_raw!r}") from None
    if not 0 <= low_balance_warning < float("inf"):
        raise ConfigError(f"LOW_BALANCE_WARNING must be 0 or more, got {low_balance_raw!r}")

    return Settings(
        discord_token=Secret(discord_token),
        aiml_api_key=Secret(aiml_api_key),
        api_base_url=api_base_url,
        database_path=database_path(env),
        database_url=database_url(env),
        poll_interval_seconds=_positive_float(env, "POLL_INTERVAL_SECONDS", 10.0),
        generation_timeout_minutes=_positive_float(env, "GENERATION_TIMEOUT_MINUTES", 30.0),
        dev_guild_id=dev_guild_id,
        log_level=log_level,
        discord_api_base_url=_http_url(env, "DISCORD_API_BASE_URL", None),
        default_limits=ServerLimits(
            user_daily=_non_negative_int(env, "DEFAULT_USER_DAILY"),
            server_daily=_non_negative_int(env, "DEFAULT_SERVER_DAILY"),
            user_concurrent=_non_negative_int(env, "DEFAULT_USER_CONCURRENT"),
            cooldown_seconds=_non_negative_int(env, "DEFAULT_COOLDOWN_SECONDS"),
        ),
        global_daily_limit=_non_negative_int(env, "GLOBAL_DAILY_LIMIT"),
        luma_models=luma_models,
        low_balance_warning=low_balance_warning,
        metrics_port=_port(env, "METRICS_PORT"),
        metrics_host=env.get("METRICS_HOST", "").strip() or "127.0.0.1",
        reconcile_first_check_seconds=_bounded_float(env, "RECONCILE_FIRST_CHECK_SECONDS", 30.0, 60.0),
        reconcile_window_minutes=_bounded_float(env, "RECONCILE_WINDOW_MINUTES", 60.0, 24 * 60.0),
        max_running_generations=_non_negative_int(env, "MAX_RUNNING_GENERATIONS"),
        queue_timeout_minutes=_positive_float(env, "QUEUE_TIMEOUT_MINUTES", 60.0),
        shard_count=shard_count,
        shard_ids=_shard_ids(env, shard_count),
    )
