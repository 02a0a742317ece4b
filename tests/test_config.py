"""Settings resolution, the documented file, and the CLI's one-line errors."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from gravityd.config import ConfigError, load_config, settings_table

from .support import REPO, run_cli

TOML = REPO / "config" / "gravityd.toml"


def test_config_file_documents_every_knob_with_its_default() -> None:
    data = tomllib.loads(TOML.read_text())
    text = TOML.read_text().splitlines()
    for section, key, default in settings_table():
        assert section in data, f"[{section}] missing from {TOML}"
        assert key in data[section], f"[{section}] {key} missing from {TOML}"
        assert data[section][key] == default, f"[{section}] {key}: file and code disagree"
        i = next(n for n, line in enumerate(text) if line.startswith(f"{key} ="))
        assert text[i - 1].startswith("#"), f"{key} has no comment above it"
    known = {(s, k) for s, k, _ in settings_table()}
    for section, table in data.items():
        for key in table:
            assert (section, key) in known, f"[{section}] {key} in the file is not a setting"


def test_defaults_without_any_file(tmp_path: Path) -> None:
    cfg = load_config(None, env={})
    assert cfg == load_config(TOML, env={})
    assert cfg.port == 8080 and cfg.db == "gravityd.db"


def test_file_then_env_then_flags(tmp_path: Path) -> None:
    f = tmp_path / "c.toml"
    f.write_text('[server]\nport = 9000\nhost = "0.0.0.0"\n[graph]\nhalf_life_days = 7.0\n')
    cfg = load_config(f, env={})
    assert (cfg.port, cfg.host, cfg.graph.half_life_days) == (9000, "0.0.0.0", 7.0)
    env = {
        "GRAVITYD_PORT": "9100",
        "GRAVITYD_HALF_LIFE_DAYS": "3",
        "GRAVITYD_CORS_ORIGINS": "https://a.example, https://b.example",
    }
    cfg = load_config(f, env=env)
    assert cfg.port == 9100 and cfg.graph.half_life_days == 3.0
    assert cfg.cors_origins == ["https://a.example", "https://b.example"]
    cfg = load_config(f, env=env, overrides={"port": 9200, "host": None})
    assert cfg.port == 9200 and cfg.host == "0.0.0.0"
    cfg = load_config(None, env={"GRAVITYD_CONFIG": str(f)})
    assert cfg.port == 9000


@pytest.mark.parametrize(
    ("text", "env", "needle"),
    [
        ('[server]\nport = "x"\n', {}, "port"),
        ("[server]\nmax_batch_events = 10\n", {}, "max_batch_events"),
        ("[server]\nmax_neighbors_limit = 5\n", {}, "max_neighbors_limit"),
        ('[storage]\nsynchronous = "OFF"\n', {}, "synchronous"),
        ("[server]\nnope = 1\n", {}, "nope"),
        ("[graph]\nhalf_life_dayz = 1\n", {}, "half_life_dayz"),
        ("[graph]\nsession_timeout_s = -1\n", {}, "session_timeout_s"),
        ("", {"GRAVITYD_PORT": "eighty"}, "GRAVITYD_PORT"),
        ("port = [", {}, "not valid TOML"),
    ],
)
def test_bad_values_name_the_key(tmp_path: Path, text: str, env: dict, needle: str) -> None:
    f = tmp_path / "c.toml"
    f.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(f, env=env)
    assert needle in str(info.value)
    assert "\n" not in str(info.value)


@pytest.mark.process
@pytest.mark.parametrize(
    "args",
    [
        ["--help"],
        ["serve", "--help"],
        ["build", "--help"],
        ["simulate", "--help"],
        ["snapshot", "--help"],
        ["restore", "--help"],
    ],
)
def test_help_works(args: list[str]) -> None:
    out = run_cli(*args)
    assert out.returncode == 0 and "usage: gravityd" in out.stdout


@pytest.mark.process
@pytest.mark.parametrize(
    "args",
    [
        ["serve", "--bogus"],
        ["serve", "--port", "x"],
        ["serve", "--config", "/nonexistent/gravityd.toml"],
        ["nosuchcommand"],
        ["simulate", "--sessions", "0"],
        ["build", "--db"],
        ["restore"],
    ],
)
def test_cli_errors_are_one_line_exit_2(args: list[str]) -> None:
    out = run_cli(*args)
    assert out.returncode == 2
    assert len(out.stderr.strip().splitlines()) == 1, out.stderr
    assert "Traceback" not in out.stderr


@pytest.mark.process
def test_simulate_without_a_daemon_is_one_line() -> None:
    out = run_cli("simulate", "--url", "http://127.0.0.1:9", "--sessions", "1")
    assert out.returncode == 1
    assert out.stderr.strip().startswith("gravityd: error:")
    assert "Traceback" not in out.stderr


@pytest.mark.process
def test_serve_refuses_a_busy_log(tmp_path: Path, daemon_factory) -> None:
    d = daemon_factory().start()
    out = run_cli("serve", "--port", "0", "--db", str(d.db))
    assert out.returncode == 2
    assert "another gravityd process" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1
