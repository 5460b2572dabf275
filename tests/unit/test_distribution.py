"""The distribution: a name of its own on the package index, installing the cdp command
and the cdp package."""

import tomllib
from importlib.metadata import distribution
from pathlib import Path

from cdp import DISTRIBUTION

PYPROJECT = Path(__file__).parents[2] / "pyproject.toml"


def test_the_distribution_is_named_apart_from_the_cdp_on_the_package_index() -> None:
    project = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))["project"]
    assert project["name"] == DISTRIBUTION != "cdp"
    # Extras that take in other extras name the distribution itself.
    refers = [
        requirement
        for extra in project["optional-dependencies"].values()
        for requirement in extra
        if "[" in requirement and requirement.split("[")[0] in ("cdp", DISTRIBUTION)
    ]
    assert refers
    assert all(requirement.startswith(f"{DISTRIBUTION}[") for requirement in refers)
    # Installed under that name, with the command still called cdp.
    installed = distribution(DISTRIBUTION)
    assert installed.version == project["version"]
    commands = {entry.name: entry.value for entry in installed.entry_points}
    assert commands["cdp"] == "cdp.cli:main"
