"""The documentation keeps up with the code: every flag, every setting, one version, live links."""

from __future__ import annotations

import argparse
import re
import tomllib
from pathlib import Path

import pytest

import gravityd
from gravityd.commands.cli import build_parser
from gravityd.config import settings_table

REPO = Path(__file__).resolve().parent.parent
DOCS = REPO / "docs"


def _subcommands(parser: argparse.ArgumentParser, prefix: str = "") -> list[tuple[str, object]]:
    """(command path, parser) of every subcommand, nested ones (`catalog load`) included."""
    out = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                path = f"{prefix} {name}".strip()
                out.append((path, sub))
                out.extend(_subcommands(sub, path))
    return out


def _long_options() -> list[tuple[str, str]]:
    """(command, --flag) for every documented long option of every subcommand."""
    out = []
    for command, sub in _subcommands(build_parser()):
        for action in sub._actions:
            if action.help == argparse.SUPPRESS:  # internal (serve --worker-index)
                continue
            for option in action.option_strings:
                if option.startswith("--") and option != "--help":
                    out.append((command, option))
    return out


def test_the_parser_has_subcommands_and_flags() -> None:
    commands = {c for c, _ in _subcommands(build_parser())}
    assert {"serve", "build", "import", "catalog load"} <= commands
    assert ("serve", "--log-url") in _long_options()


@pytest.mark.parametrize(("command", "option"), _long_options())
def test_every_cli_flag_is_in_docs_cli(command: str, option: str) -> None:
    text = (DOCS / "cli.md").read_text(encoding="utf-8")
    assert re.search(rf"{re.escape(option)}(?![\w-])", text), (
        f"gravityd {command} {option} is missing from docs/cli.md"
    )


@pytest.mark.parametrize(("section", "key"), [(s, k) for s, k, _ in settings_table()])
def test_every_setting_is_in_docs_configuration(section: str, key: str) -> None:
    text = (DOCS / "configuration.md").read_text(encoding="utf-8")
    assert f"`{key}`" in text, f"setting [{section}] {key} is missing from docs/configuration.md"


def test_one_version_everywhere() -> None:
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    changelog = (REPO / "CHANGELOG.md").read_text(encoding="utf-8")
    first = re.search(r"^## (\d+\.\d+\.\d+)\b", changelog, re.MULTILINE)
    assert first, "CHANGELOG.md has no '## x.y.z' heading"
    assert pyproject["project"]["version"] == gravityd.__version__ == first.group(1)


def test_readme_is_short_and_its_doc_links_resolve() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert len(readme.splitlines()) <= 300
    links = re.findall(r"\]\((docs/[^)#\s]+\.md)(?:#[^)]*)?\)", readme)
    assert links, "README.md links no docs/ page"
    for link in links:
        assert (REPO / link).is_file(), f"README.md links {link}, which does not exist"
    pages = {p.relative_to(REPO).as_posix() for p in (REPO / "docs").glob("*.md")}
    assert pages <= set(links), f"docs pages the README does not list: {sorted(pages - set(links))}"
