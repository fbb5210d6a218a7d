"""The package's layers: each package of skelray imports only from the layers below it.

Read from the source (every ``import`` statement, including those inside functions), so an
upward import cannot hide behind a lazy import. Layers, bottom to top, and why they sit there:

- ``errors`` and ``console``, then ``config`` and ``runtime``: what every layer shares (error
  types, how wide command output is, the trial config and problem collector, starting Ray).
- ``record``: what a trial writes and the sweep, ensemble and export read back.
- ``data`` -> ``models`` -> ``sparsity``: skeletons, the model zoo (with its fusion and the
  compaction registry), trainable sparsity (which plugs into the zoo by an entry point).
- ``train``: one trial, from a ``TrialConfig`` to checkpoints.
- ``sweep`` -> ``ensemble`` -> ``export`` -> ``serve`` -> ``study`` -> ``deploy`` -> ``cli``.
  ``study`` runs sweeps and builds ensembles to test the papers' claims (and will serve the
  best ensemble for the served-equals-offline claim), so it sits above them.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "skelray"
LAYERS = [
    {"__init__"},
    {"errors", "console"},
    {"config", "runtime"},
    {"record"},
    {"data"},
    {"models"},
    {"sparsity"},
    {"train"},
    {"sweep"},
    {"ensemble"},
    {"export"},
    {"serve"},
    {"study"},
    {"deploy"},
    {"cli"},
]
LEVEL = {name: i for i, layer in enumerate(LAYERS) for name in layer}


def _imports(path: Path, root: Path = PACKAGE) -> list[tuple[int, str]]:
    """(line, skelray.<top> name) of every skelray import in the module at ``path``."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = list(path.relative_to(root.parent).parts[:-1])  # e.g. ["skelray", "models"]
    out: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against this module's package
                base = package[: len(package) - node.level + 1]
                names = [".".join([*base, node.module] if node.module else base)]
            else:
                names = [node.module or ""]
            if names == ["skelray"]:  # from skelray import x: x is the top-level name
                names = [f"skelray.{a.name}" for a in node.names]
        else:
            continue
        for name in names:
            parts = name.split(".")
            if parts[0] == "skelray" and len(parts) > 1:
                out.append((node.lineno, parts[1]))
    return out


def violations(root: Path = PACKAGE) -> list[str]:
    found = []
    for path in sorted(root.rglob("*.py")):
        own = path.relative_to(root).parts[0].removesuffix(".py")
        where = path.relative_to(root.parent)
        for line, target in _imports(path, root):
            if target in (own, "__version__"):
                continue
            if target not in LEVEL or own not in LEVEL:
                found.append(f"{where}:{line}: skelray.{target if target not in LEVEL else own} has no "
                             f"layer (add it to LAYERS in tests/test_layers.py)")
            elif LEVEL[target] >= LEVEL[own]:
                found.append(f"{where}:{line}: skelray.{own} imports skelray.{target}, which is not below it")
    return found


def test_every_package_imports_only_downward() -> None:
    assert violations() == []


def test_the_named_boundaries_hold() -> None:
    """Boundaries beyond the layer order: serving runs exported bundles, so it needs neither
    the trainer nor the sweep machinery (the layers alone would allow both)."""
    for own, forbidden in [("train", "sweep"), ("models", "sparsity"), ("serve", "train"), ("serve", "sweep")]:
        for path in (PACKAGE / own).rglob("*.py"):
            assert all(t != forbidden for _, t in _imports(path)), f"{path} imports skelray.{forbidden}"


def test_the_checker_sees_lazy_and_relative_imports(tmp_path: Path) -> None:
    root = tmp_path / "skelray"
    (root / "models").mkdir(parents=True)
    (root / "models" / "probe.py").write_text(
        "import skelray.data\n\ndef f():\n    from skelray.sparsity import compact\n    from ..train import loop\n"
        "    from . import _fuse\n    from skelray import serve\n")
    assert [t for _, t in _imports(root / "models" / "probe.py", root)] == \
        ["data", "sparsity", "train", "models", "serve"]
    assert [v.split(": ", 1)[1] for v in violations(root)] == [
        "skelray.models imports skelray.sparsity, which is not below it",
        "skelray.models imports skelray.train, which is not below it",
        "skelray.models imports skelray.serve, which is not below it",
    ]
