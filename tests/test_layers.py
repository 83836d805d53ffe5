"""Imports only point down the layers written in docs/architecture.md."""

import ast
import re
from pathlib import Path

ROOT = Path(__file__).parent.parent
SRC = ROOT / "src" / "aligndepth"
_NAME = re.compile(r"^[a-z_]+(?:\.py|/)$")


def layers() -> dict[str, int]:
    """{module or package name: row} from the first code block of the architecture doc."""
    text = (ROOT / "docs" / "architecture.md").read_text()
    block = text.split("\n\n    ", 1)[1].split("\n\n", 1)[0]
    rank: dict[str, int] = {}
    row = -1
    for line in ("    " + block).splitlines():
        if not line.startswith("    ") or line.startswith("        "):
            continue  # a description's continuation
        names = []
        for token in line.split():
            if not _NAME.match(token):
                break
            names.append(token.removesuffix(".py").removesuffix("/"))
        if names:
            row += 1
            rank.update(dict.fromkeys(names, row))
    return rank


def _imports(path: Path) -> list[tuple[int, str]]:
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            out.append((node.lineno, node.module))
        elif isinstance(node, ast.Import):
            out += [(node.lineno, alias.name) for alias in node.names]
    return [(line, m) for line, m in out if m.startswith("aligndepth.")]


def test_every_module_has_a_layer_and_imports_point_down() -> None:
    rank = layers()
    assert len(set(rank.values())) >= 10, rank
    unplaced, upward = [], []
    for path in sorted(SRC.rglob("*.py")):
        top = path.relative_to(SRC).parts[0].removesuffix(".py")
        if top in ("__init__",):
            continue  # the package's lazy public API re-exports every layer
        if top not in rank:
            unplaced.append(top)
            continue
        for line, module in _imports(path):
            target = module.split(".")[1]
            if target != top and rank.get(target, -1) < rank[top]:
                upward.append(f"{path.relative_to(SRC)}:{line} imports {module}")
    assert not unplaced, f"modules missing from docs/architecture.md: {sorted(set(unplaced))}"
    assert not upward, "imports pointing up the layers:\n" + "\n".join(upward)


def test_the_check_sees_an_upward_import(tmp_path: Path) -> None:
    bad = tmp_path / "x.py"
    bad.write_text("def f():\n    from aligndepth.cli import main\n")
    rank = layers()
    [(line, module)] = _imports(bad)
    assert line == 2 and rank[module.split(".")[1]] < rank["models"]


def test_no_module_is_over_400_lines() -> None:
    long = {str(p.relative_to(SRC)): n for p in SRC.rglob("*.py")
            if (n := len(p.read_text().splitlines())) > 400}
    assert not long, f"split these modules (one job each): {long}"
