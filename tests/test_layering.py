"""The package's import graph, read from the source (function-local imports included): no import cycle between
modules, at most one import against the layering, and MLflow imported only in its room.

The layers (docs/architecture.md), lowest first; a module may import its own layer and any lower one:
"""

from __future__ import annotations

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / "sai_mlflow"

LAYERS = [  # (layer, module prefixes); the longest matching prefix decides
    ("contract", ["keys", "errors", "log", "redact", "yaml_file", "ui_links", "tracking.batching"]),
    ("readings", ["ultralytics_args", "telemetry", "data", "importers.ultralytics_mapping"]),
    ("store", ["tracking.sink", "tracking.mlflow_errors", "tracking.backoff", "tracking.address",
               "tracking.writable", "tracking.settings", "tracking"]),
    ("backend", ["backend", "tracking.store"]),  # tracking/store.py: the commands' one import of address + client
    ("recording", ["model", "tracking.spool", "tracking.publisher", "tracking.run_open", "telemetry.system"]),
    ("judging", ["compare"]),
    ("operations", ["importers", "promotion", "preflight", "config"]),
    ("training", ["training", "trainer"]),  # the tracked trainer (public: sai_mlflow.trainer), its run, the guard
    ("probing", ["probe"]),
    ("app", ["app"]),  # the flows: train, probe, preflight, compare, promote
    ("cli", ["cli", ""]),  # "" : the package itself (its __init__)
]

# The imports that go against the layering today; the lead removes an entry once its owner's branch is merged.
KNOWN_AGAINST = {
    ("tracking.settings", "config"),  # the one settings schema (ddp): the settings are the validated config section
}
KNOWN_CYCLES: list[set[str]] = []

MLFLOW_ROOM = ("backend", "cli.boundary")  # the only modules that may import mlflow


def _name(path: Path) -> str:
    parts = list(path.relative_to(PKG).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


MODULES = {_name(p): p for p in PKG.rglob("*.py")}


def _targets(module: str, node: ast.AST, is_package: bool) -> list[str]:
    """The project modules an import statement reaches ("" is the package itself)."""
    if isinstance(node, ast.Import):
        names = [a.name for a in node.names]
        return [n.removeprefix("sai_mlflow").lstrip(".") for n in names if n.split(".")[0] == "sai_mlflow"]
    if node.level == 0:
        if not (node.module or "").startswith("sai_mlflow"):
            return []
        base = node.module.removeprefix("sai_mlflow").lstrip(".")
    else:
        here = module.split(".") if module else []
        if not is_package:
            here = here[:-1]
        here = here[:len(here) - (node.level - 1)]
        base = ".".join(here + ([node.module] if node.module else []))
    out = []
    for alias in node.names:
        full = f"{base}.{alias.name}" if base else alias.name
        out.append(full if full in MODULES else base)
    return out


def _graph() -> dict[str, set[str]]:
    edges: dict[str, set[str]] = {m: set() for m in MODULES}
    for module, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import | ast.ImportFrom):
                for target in _targets(module, node, path.name == "__init__.py"):
                    while target not in MODULES and "." in target:
                        target = target.rsplit(".", 1)[0]
                    if target in MODULES and target != module:
                        edges[module].add(target)
    return edges


def _imports_mlflow(path: Path) -> bool:
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import) and any(a.name.split(".")[0] == "mlflow" for a in node.names):
            return True
        if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").split(".")[0] == "mlflow":
            return True
    return False


def layer_of(module: str) -> int:
    best, rank = -1, None
    for i, (_, prefixes) in enumerate(LAYERS):
        for p in prefixes:
            if (module == p or module.startswith(p + ".") or p == "") and len(p) > best:
                best, rank = len(p), i
    return rank


def _cycles(edges: dict[str, set[str]]) -> list[set[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(edges[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = set()
            while True:
                w = stack.pop()
                on.discard(w)
                comp.add(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(comp)

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def test_every_module_has_a_layer():
    assert [m for m in MODULES if layer_of(m) is None] == []


def test_no_import_cycle():
    cycles = [c for c in _cycles(_graph()) if c not in KNOWN_CYCLES]
    assert cycles == [], f"import cycles: {cycles}"


def test_at_most_one_import_against_the_layering():
    edges = _graph()
    against = sorted((m, t) for m, ts in edges.items() for t in ts if layer_of(t) > layer_of(m))
    assert len(against) <= 1, "imports against the layering (" + ", ".join(f"{m} -> {t}" for m, t in against) + ")"
    assert set(against) <= KNOWN_AGAINST, f"new imports against the layering: {set(against) - KNOWN_AGAINST}"


def test_mlflow_is_imported_only_in_its_room():
    outside = {m for m, p in MODULES.items()
               if _imports_mlflow(p) and not any(m == r or m.startswith(r + ".") for r in MLFLOW_ROOM)}
    assert outside == set(), f"mlflow imported outside backend/: {sorted(outside)}"


def test_readme_layout_table_names_every_room():
    """The README's layout table is the map: every top-level module and package of sai_mlflow is on it."""
    readme = (PKG.parent / "README.md").read_text()
    table = readme[readme.index("## Layout"):readme.index("## Tests")]
    rooms = sorted(p.name for p in PKG.iterdir()
                   if (p.suffix == ".py" and p.name != "__init__.py") or (p.is_dir() and (p / "__init__.py").is_file()))
    missing = [r for r in rooms if f"`sai_mlflow/{r}" not in table]
    assert missing == [], f"README's layout table does not name: {missing}"


def test_a_command_imports_no_other_command():
    """`cli/*` modules share only the boundary; what two commands share is a flow in `app/` or a room below."""
    edges = _graph()
    crossing = sorted((m, t) for m, ts in edges.items() if m.startswith("cli.")
                      for t in ts if t.startswith("cli.") and t != "cli.boundary")
    assert crossing == [], f"a command imports another command: {crossing}"
