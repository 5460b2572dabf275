// Redoc on /schema/redoc: the schema is fetched, not written into the page, so that the
// page runs no script of its own (its Content-Security-Policy allows none).
Redoc.init("/schema/openapi.json", {}, document.getElementById("redoc-container"));
