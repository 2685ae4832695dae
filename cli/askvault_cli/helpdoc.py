"""Writes every command's ``--help`` into docs/cli.md, between its help markers:
``python -m askvault_cli.helpdoc`` (a test checks the file is current)."""

from __future__ import annotations

import sys
from pathlib import Path

from typer.testing import CliRunner

from askvault_cli.main import app

DOC = Path(__file__).resolve().parents[2] / "docs" / "cli.md"
START = "<!-- help:start (python -m askvault_cli.helpdoc) -->"
END = "<!-- help:end -->"
COMMANDS = (
    (),
    ("login",),
    ("whoami",),
    ("connect-stripe",),
    ("webhook-check",),
    ("webhook-secret", "retire"),
    ("bounds", "get"),
    ("bounds", "propose"),
    ("bounds", "approve"),
    ("bounds", "history"),
    ("confirmation",),
    ("escalations", "list"),
    ("escalations", "show"),
    ("escalations", "approve"),
    ("escalations", "deny"),
    ("audit", "list"),
    ("audit", "verify"),
    ("recovery", "stats"),
    ("messages", "list"),
    ("messages", "resend"),
    ("secrets", "add"),
    ("secrets", "list"),
    ("secrets", "retire"),
    ("workspace", "settings", "get"),
    ("workspace", "settings", "set"),
    ("workspace", "helpdesk-secret"),
)


def render() -> str:
    """The help of every command, as Markdown sections."""
    parts: list[str] = []
    for command in COMMANDS:
        result = CliRunner().invoke(app, [*command, "--help"], env={"COLUMNS": "100"})
        if result.exit_code != 0:
            raise RuntimeError(f"askvault {' '.join(command)} --help failed")
        title = " ".join(("askvault", *command, "--help"))
        parts.append(f"### `{title}`\n\n```text\n{result.stdout.rstrip()}\n```\n")
    return "\n".join(parts)


def current(text: str) -> str:
    """The generated part of the document."""
    return text.split(START, 1)[1].split(END, 1)[0].strip("\n")


def main() -> None:
    text = DOC.read_text()
    before, rest = text.split(START, 1)
    after = rest.split(END, 1)[1]
    DOC.write_text(f"{before}{START}\n{render()}\n{END}{after}")
    sys.stdout.write(f"wrote {DOC}\n")


if __name__ == "__main__":
    main()
