"""A migration is frozen: it does today what it did when it was written, whatever becomes of
cdp's own code. So no file of migrations/versions imports cdp (at its top, inside a
function, or by name at run time); what a migration needs of cdp is copied into it.
(migrations/env.py is no migration: it is where cdp meets Alembic.)"""

import ast
from pathlib import Path

VERSIONS = Path(__file__).parents[2] / "migrations" / "versions"


def cdp_imports(path: Path) -> list[str]:
    """Where the file imports cdp, or a module of it: 'file:line: what', one each."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = [node.module or ""] if node.level == 0 else []
        elif isinstance(node, ast.Call) and _imports_by_name(node.func) and node.args:
            first = node.args[0]
            names = [first.value] if isinstance(first, ast.Constant) else []
        else:
            continue
        for name in names:
            if isinstance(name, str) and (name == "cdp" or name.startswith("cdp.")):
                found.append((node.lineno, f"{path.name}:{node.lineno}: {ast.unparse(node)}"))
    return [line for _, line in sorted(found)]


def _imports_by_name(func: ast.expr) -> bool:
    """Is this call __import__(...) or import_module(...) (importlib's, however reached)?"""
    if isinstance(func, ast.Name):
        return func.id in ("__import__", "import_module")
    return isinstance(func, ast.Attribute) and func.attr in ("__import__", "import_module")


def test_there_are_migrations_to_check() -> None:
    assert len(list(VERSIONS.glob("*.py"))) >= 17


def test_no_migration_imports_cdp() -> None:
    found = [line for path in sorted(VERSIONS.glob("*.py")) for line in cdp_imports(path)]
    assert not found, "migrations must not import cdp (copy what they need):\n" + "\n".join(found)


def test_the_check_finds_every_way_of_importing_cdp(tmp_path: Path) -> None:
    migration = tmp_path / "0099_example.py"
    migration.write_text(
        "import json\n"
        "import cdp\n"
        "import cdp.chain as chain\n"
        "from cdp.webhook import logged\n"
        "from cdp import personal\n"
        "from cdpx import fine\n"
        "from . import fine_too\n"
        "\n"
        "def upgrade():\n"
        "    from cdp.upgrades import Refused\n"
        "    importlib.import_module('cdp.times')\n"
        "    __import__('cdp')\n",
        encoding="utf-8",
    )
    lines = [line.split(": ", 1)[0] for line in cdp_imports(migration)]
    assert lines == [f"0099_example.py:{n}" for n in (2, 3, 4, 5, 10, 11, 12)]
