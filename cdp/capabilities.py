"""The capability folders of the package (cdp/<name>/), and what each holds by convention.

A folder that holds a `tables.py` declares tables (see cdp.upgrades), a `projector.py`
a read model fed from the log (its `create(settings)`, see cdp.projections.registry), a
`routes.py` HTTP routes (its `ROUTES`, see cdp.http.app). Nothing else registers them: a
new read model is a folder, and a migration for its tables.
"""

import importlib
from pathlib import Path
from types import ModuleType
from typing import Final

PACKAGE: Final = Path(__file__).parent


def names() -> list[str]:
    """The capability folders, by name."""
    return sorted(
        path.name
        for path in PACKAGE.iterdir()
        if (path / "__init__.py").is_file() and not path.name.startswith("_")
    )


def modules(kind: str) -> list[ModuleType]:
    """The module `kind` (`tables`, `projector`, `routes`) of every folder that has one, in
    the folders' order."""
    return [
        importlib.import_module(f"cdp.{name}.{kind}")
        for name in names()
        if (PACKAGE / name / f"{kind}.py").is_file()
    ]
