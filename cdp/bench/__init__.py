"""`cdp bench`: how fast this installation ingests, imports, rebuilds and answers."""

# The figures' groups, which `cdp bench --only` chooses among.
GROUPS = (
    "import",
    "queries",
    "reports",
    "console",
    "webhook",
    "http",
    "workers",
    "rebuild",
    "profiles",
    "maintenance",
    "streams",
)
