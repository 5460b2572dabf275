"""The capability folders are found by their files' names (see cdp.capabilities): what
each declares is what the registry, Alembic and the app take, and nothing is declared
twice or outside a folder."""

from pathlib import Path
from types import SimpleNamespace

import pytest
from litestar import Litestar
from litestar.di import Provide

from cdp import capabilities, upgrades
from cdp.http.app import create_app
from cdp.projections import registry
from cdp.settings import Settings
from cdp.tables import Base

DEPENDENCIES = ("service", "gate", "streams")  # what create_app provides


def test_every_table_is_declared_in_one_capability_folder() -> None:
    declared = [
        (module.__name__, table.name)
        for module in capabilities.modules("tables")
        for table in vars(module).values()
        if getattr(table, "metadata", None) is Base.metadata and hasattr(table, "c")
    ]
    names = [name for _, name in declared]
    assert len(names) == len(set(names)), declared
    assert set(names) == {table.name for table in upgrades.METADATA.sorted_tables}


def test_the_registry_holds_each_folder_s_projector_and_each_writes_only_its_own_tables() -> None:
    made = registry.projectors(Settings())
    found = [module.__name__ for module in capabilities.modules("projector")]
    assert len(made) == len(found) >= 3
    assert [projector.name for projector in made][:1] == ["chats"]  # the folders' order
    owners: dict[str, str] = {}
    for projector in made:
        for table in projector.tables:
            assert table.name not in owners, (table.name, owners.get(table.name))
            owners[table.name] = projector.name
            assert table.metadata is Base.metadata
        assert callable(projector.apply)
        assert callable(projector.forget)


def test_the_app_serves_every_route_of_every_folder(tmp_path: Path) -> None:
    declared = [route for module in capabilities.modules("routes") for route in module.ROUTES]
    given = {name: Provide(lambda: None, sync_to_thread=False) for name in DEPENDENCIES}
    alone = Litestar(route_handlers=declared, dependencies=given, openapi_config=None)
    served = {
        route.path
        for route in create_app(Settings(database_url=f"sqlite:///{tmp_path / 'cdp.db'}")).routes
    }
    paths = {route.path for route in alone.routes}
    assert {"/webhooks/fasttrack", "/chats/{uuid:str}", "/teams", "/sources"} <= paths
    assert paths <= served


def test_a_projector_is_fed_after_those_it_reads_and_a_cycle_is_named(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    made = registry.projectors(Settings())
    first, last = made[0], made[-1]
    modules = [SimpleNamespace(create=lambda _, p=p: p) for p in made]
    monkeypatch.setattr(registry.capabilities, "modules", lambda kind: modules)
    monkeypatch.setattr(first, "reads", (last.name,))
    order = [p.name for p in registry.projectors(Settings())]
    assert order.index(last.name) < order.index(first.name)
    for projector in made:  # every one after all it reads
        assert all(order.index(name) < order.index(projector.name) for name in projector.reads)
    monkeypatch.setattr(last, "reads", (first.name,))
    with pytest.raises(RuntimeError, match=f"{first.name} reads {last.name}"):
        registry.projectors(Settings())
