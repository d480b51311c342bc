"""Placeholder: the commands of this module arrive with their issue."""

COMMANDS: list = []


def main() -> None:
    raise SystemExit("compare-runs: not built yet (issue #3)")
