"""Settings: built-in defaults, then the TOML file, then GRAVITYD_* variables, then flags.

Every knob lives in one dataclass field whose metadata names its TOML section, so the loader,
the environment mapping and the documented file (config/gravityd.toml, checked by a test)
cannot drift apart. Keys are unique across sections so `GRAVITYD_<KEY>` is unambiguous.
"""

from __future__ import annotations

import dataclasses
import math
import os
import tomllib
import types
import typing
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from gravityd.core.events import ValidationLimits
from gravityd.core.galaxies import GalaxyParams
from gravityd.core.graph import FoldParams
from gravityd.core.ranking import RankParams
from gravityd.core.scoreboard import ReportParams
from gravityd.http.limits import parse_networks
from gravityd.log.jetstream_params import JetStreamParams

ENV_PREFIX = "GRAVITYD_"
DEFAULT_CONFIG = Path(__file__).resolve().parent.parent / "config" / "gravityd.toml"

# Contract floors: a configured limit may be larger, never smaller.
FLOORS = {
    "max_batch_events": 5000,
    "max_batch_bytes": 4 * 1024 * 1024,
    "max_neighbors_limit": 100,
    "max_rank_pool": 1000,
}


class ConfigError(ValueError):
    """A bad setting; the message names the key so the one line on stderr is enough."""


def _s(section: str, default: Any, minimum: float | None = None, choices: tuple = ()) -> Any:
    meta = {"section": section, "min": minimum, "choices": choices}
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass
class Config:
    """Every setting of the daemon and the commands, with its built-in default."""

    # [server]
    host: str = _s("server", "127.0.0.1")
    port: int = _s("server", 8080, 0)
    cors_origins: list[str] = _s("server", ["*"])  # noqa: RUF009 - a fresh list per instance
    admin_token: str = _s("server", "")
    max_event_bytes: int = _s("server", 65536, 1024)
    max_batch_bytes: int = _s("server", 4 * 1024 * 1024, FLOORS["max_batch_bytes"])
    max_batch_events: int = _s("server", 5000, FLOORS["max_batch_events"])
    max_neighbors_limit: int = _s("server", 100, FLOORS["max_neighbors_limit"])
    max_rank_pool: int = _s("server", 1000, FLOORS["max_rank_pool"])
    shutdown_timeout_s: float = _s("server", 10.0, 0)
    event_loop: str = _s("server", "auto", choices=("auto", "uvloop", "asyncio"))
    # [limits]
    rate_limit_per_s: float = _s("limits", 2000.0, 0)
    rate_limit_burst: int = _s("limits", 4000, 1)
    rate_limit_exempt: list[str] = _s("limits", ["127.0.0.0/8", "::1/128"])  # noqa: RUF009
    trusted_proxies: list[str] = _s("limits", [])  # noqa: RUF009
    rate_limit_max_clients: int = _s("limits", 100000, 1)
    max_concurrent_requests: int = _s("limits", 1024, 1)
    body_timeout_s: float = _s("limits", 30.0, 0.01)
    keepalive_timeout_s: float = _s("limits", 30.0, 0.01)
    max_url_bytes: int = _s("limits", 4096, 256)
    max_header_bytes: int = _s("limits", 8190, 1024)
    max_headers: int = _s("limits", 100, 10)
    # [storage]
    db: str = _s("storage", "gravityd.db")
    snapshot_dir: str = _s("storage", "snapshots")
    synchronous: str = _s("storage", "FULL", choices=("FULL", "NORMAL"))
    busy_timeout_ms: int = _s("storage", 5000, 0)
    # [ingest]
    max_session_id_len: int = _s("ingest", 128, 1)
    max_event_id_len: int = _s("ingest", 128, 1)
    max_context_len: int = _s("ingest", 64, 1)
    max_future_s: float = _s("ingest", 300.0, 0)
    max_meta_bytes: int = _s("ingest", 16384, 256)
    commit_max_events: int = _s("ingest", 20000, 1)
    # [fold]
    fold_batch_events: int = _s("fold", 2000, 1)
    fold_slice_events: int = _s("fold", 100, 1)
    fold_interval_ms: float = _s("fold", 20.0, 0)
    lanes_max_lag_ms: float = _s("fold", 250.0, 1)
    lanes_refresh_slice_ms: float = _s("fold", 2.0, 0.1)
    lanes_refresh_share: float = _s("fold", 0.5, 0.05)
    # [snapshot]
    snapshot_interval_s: float = _s("snapshot", 300.0, 1)
    snapshot_min_events: int = _s("snapshot", 1, 1)
    snapshot_retry_s: float = _s("snapshot", 10.0, 0.01)
    snapshot_keep: int = _s("snapshot", 3, 1)
    snapshot_chunk: int = _s("snapshot", 2000, 100)
    snapshot_track_edges: bool = _s("snapshot", True)
    snapshot_on_shutdown: bool = _s("snapshot", True)
    log_retention_days: float = _s("snapshot", 0.0, 0)
    # [roles]: one process doing everything, or writers and replicas over one log
    role: str = _s("roles", "all", choices=("all", "writer", "replica"))
    workers: int = _s("roles", 1, 1)
    log_url: str = _s("roles", "")
    read_wait_ms: float = _s("roles", 1000.0, 0)
    log_poll_ms: float = _s("roles", 2.0, 0.1)
    worker_restart_max_s: float = _s("roles", 30.0, 0.1)
    # [log]
    log_level: str = _s("log", "INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR"))
    log_format: str = _s("log", "json", choices=("json", "text"))
    # [graph]: the fold's model, see gravityd/core/graph.py
    graph: FoldParams = field(default_factory=FoldParams, metadata={"section": "graph"})
    # [rank]: the blend of embedding and graph, see gravityd/core/ranking.py
    rank: RankParams = field(default_factory=RankParams, metadata={"section": "rank"})
    # [report]: the radio's scoreboard, see gravityd/core/scoreboard.py
    report: ReportParams = field(default_factory=ReportParams, metadata={"section": "report"})
    # [jetstream]: the NATS JetStream log (--log-url nats://...), see gravityd/log/jetstream/
    jetstream: JetStreamParams = field(
        default_factory=JetStreamParams, metadata={"section": "jetstream"}
    )
    # [galaxies]: communities, centrality and routes, see gravityd/core/galaxies.py
    galaxies: GalaxyParams = field(default_factory=GalaxyParams, metadata={"section": "galaxies"})

    @property
    def log_backend(self) -> tuple[str, str]:
        """("sqlite", file) or ("nats", servers) from log_url; an empty log_url is the db file."""
        url = self.log_url.strip()
        if not url:
            return "sqlite", self.db
        if url.startswith("sqlite:///"):
            return "sqlite", url[len("sqlite:///") :]
        if url.startswith("nats://"):
            return "nats", url
        return "", url

    @property
    def limits(self) -> ValidationLimits:
        return ValidationLimits(
            max_session_id_len=self.max_session_id_len,
            max_event_id_len=self.max_event_id_len,
            max_context_len=self.max_context_len,
            max_future_s=self.max_future_s,
            max_meta_bytes=self.max_meta_bytes,
        )


_NESTED: dict[str, type] = {
    "graph": FoldParams,
    "rank": RankParams,
    "report": ReportParams,
    "jetstream": JetStreamParams,
    "galaxies": GalaxyParams,
}


def _base_type(tp: Any) -> Any:
    if isinstance(tp, types.UnionType) or typing.get_origin(tp) is typing.Union:
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return args[0]
    return tp


def _coerce(key: str, tp: Any, value: Any, from_env: bool) -> Any:
    """Check (TOML) or parse (environment) one value against the field's type."""
    tp = _base_type(tp)
    origin = typing.get_origin(tp)
    try:
        if origin is list:
            if from_env:
                value = [v.strip() for v in value.split(",") if v.strip()]
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise TypeError
            return value
        if tp is bool:
            if from_env:
                low = value.strip().lower()
                if low not in ("1", "true", "yes", "on", "0", "false", "no", "off"):
                    raise TypeError
                return low in ("1", "true", "yes", "on")
            if not isinstance(value, bool):
                raise TypeError
            return value
        if tp is int:
            if from_env:
                return int(value)
            if not isinstance(value, int) or isinstance(value, bool):
                raise TypeError
            return value
        if tp is float:
            if from_env:
                return float(value)
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                raise TypeError
            return float(value)
        if tp is str:
            if not isinstance(value, str):
                raise TypeError
            return value
    except (TypeError, ValueError):
        pass
    name = getattr(tp, "__name__", str(tp))
    raise ConfigError(f"setting {key}: expected {name}, got {value!r}")


def _check(key: str, meta: dict, value: Any) -> None:
    if isinstance(value, float) and not math.isfinite(value):
        # nan compares false with everything: it would switch a limit off without a word
        raise ConfigError(f"setting {key}: must be a finite number, got {value!r}")
    minimum = meta.get("min")
    if minimum is not None and value < minimum:
        floor = " (the contract's floor)" if key in FLOORS else ""
        raise ConfigError(f"setting {key}: must be at least {minimum}{floor}, got {value!r}")
    choices = meta.get("choices")
    if choices and value not in choices:
        raise ConfigError(f"setting {key}: must be one of {', '.join(choices)}, got {value!r}")


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def settings_table() -> list[tuple[str, str, Any]]:
    """(section, key, default) of every knob, in file order; used to check the TOML file."""
    out: list[tuple[str, str, Any]] = []
    for f in fields(Config):
        if f.name in _NESTED:
            for g in fields(_NESTED[f.name]):
                out.append((f.name, g.name, getattr(_NESTED[f.name](), g.name)))
        else:
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
            out.append((f.metadata["section"], f.name, default))
    return out


def load_config(
    path: str | os.PathLike | None = None,
    env: typing.Mapping[str, str] | None = None,
    overrides: dict[str, Any] | None = None,
) -> Config:
    """Resolve settings in contract order; raise ConfigError with one line naming the key.

    `path` None means GRAVITYD_CONFIG, else the repo's config/gravityd.toml if present, else
    the built-in defaults alone (which equal that file's values).
    """
    env = os.environ if env is None else env
    explicit = path is not None or bool(env.get(ENV_PREFIX + "CONFIG"))
    cfg_path = Path(path or env.get(ENV_PREFIX + "CONFIG") or DEFAULT_CONFIG)
    data: dict[str, Any] = {}
    if explicit or cfg_path.exists():
        try:
            data = tomllib.loads(cfg_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"config file not found: {cfg_path}") from None
        except OSError as exc:
            raise ConfigError(f"config file {cfg_path}: {exc.strerror}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {cfg_path}: not valid TOML: {exc}") from None

    top_hints = _hints(Config)
    top_fields = {f.name: f for f in fields(Config) if f.name not in _NESTED}
    section_of = {name: f.metadata["section"] for name, f in top_fields.items()}
    flat: dict[str, Any] = {}
    nested: dict[str, dict[str, Any]] = {name: {} for name in _NESTED}
    nested_hints = {name: _hints(cls) for name, cls in _NESTED.items()}

    for section, table in data.items():
        if not isinstance(table, dict):
            raise ConfigError(f"setting {section}: expected a [section] table")
        for key, value in table.items():
            if section in _NESTED:
                if key not in nested_hints[section]:
                    raise ConfigError(f"unknown setting [{section}] {key}")
                nested[section][key] = _coerce(key, nested_hints[section][key], value, False)
            elif section_of.get(key) == section:
                flat[key] = _coerce(key, top_hints[key], value, False)
            else:
                raise ConfigError(f"unknown setting [{section}] {key}")

    for key in top_fields:
        raw = env.get(ENV_PREFIX + key.upper())
        if raw is not None:
            flat[key] = _coerce(ENV_PREFIX + key.upper(), top_hints[key], raw, True)
    for name, hints in nested_hints.items():
        for key, tp in hints.items():
            raw = env.get(ENV_PREFIX + key.upper())
            if raw is not None:
                nested[name][key] = _coerce(ENV_PREFIX + key.upper(), tp, raw, True)

    for key, value in (overrides or {}).items():
        if value is not None:
            flat[key] = _coerce(key, top_hints[key], value, False)

    for key, value in flat.items():
        _check(key, top_fields[key].metadata, value)
    built: dict[str, Any] = dict(flat)
    for name, cls in _NESTED.items():
        try:
            built[name] = cls(**nested[name])
        except ValueError as exc:
            raise ConfigError(f"setting {exc}") from None
    cfg_log_url = str(built.get("log_url", "")).strip()
    if cfg_log_url and not cfg_log_url.startswith(("sqlite:///", "nats://")):
        raise ConfigError(
            "setting log_url: must be sqlite:///PATH or nats://HOST:PORT[,...],"
            f" got {cfg_log_url!r}"
        )
    if cfg_log_url.startswith("sqlite:///") and len(cfg_log_url) == len("sqlite:///"):
        raise ConfigError("setting log_url: sqlite:/// needs a file path")
    if built.get("workers", 1) > 1 and built.get("role", "all") != "replica":
        raise ConfigError("setting workers: more than one worker needs role replica")
    for key in ("rate_limit_exempt", "trusted_proxies"):
        try:
            parse_networks(built.get(key, []), f"setting {key}")
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
    return Config(**built)
