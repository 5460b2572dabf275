import pytest


@pytest.fixture(params=["sqlite", "postgresql"])
def server(request: pytest.FixtureRequest) -> str:
    """Where the bench makes its databases: SQLite files, or the test PostgreSQL server."""
    if request.param == "sqlite":
        return "sqlite:///"
    return str(request.getfixturevalue("postgres_url"))
