"""`train` and `make-synthetic`."""

COMMANDS: list = []
