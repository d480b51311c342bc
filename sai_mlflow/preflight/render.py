"""Render preflight findings once, as a rich table (checks themselves never print)."""

from __future__ import annotations

_STYLE = {"error": "bold red", "warning": "yellow", "info": "dim"}


def render_findings(findings, console) -> None:
    from rich.table import Table

    if not console.is_terminal and console.width < 160:
        from rich.console import Console

        console = Console(width=160, stderr=console.stderr)  # piped or logged: keep rows on one line
    if not findings:
        console.print("preflight: no findings")
        return
    table = Table(title="preflight", show_lines=False)
    for col in ("level", "code", "message", "fix"):
        table.add_column(col, overflow="fold")
    for f in findings:
        table.add_row(f"[{_STYLE.get(f.level, '')}]{f.level}[/]", f.code, f.message, f.fix)
    console.print(table)
