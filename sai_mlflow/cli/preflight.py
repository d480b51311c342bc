"""Placeholder: the commands of this module arrive with their issue."""

COMMANDS: list = []
