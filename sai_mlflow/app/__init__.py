"""The application layer: one module per flow (train, probe, preflight, compare, promote), between `cli/` and the
rooms. A flow takes validated inputs and returns a result object, or raises a `UserError` (one line, its exit
code); progress notes go through the `say` callback it is given. The commands in `cli/` parse options, call a
flow, render its result and pick the exit code.
"""
