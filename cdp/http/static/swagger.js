// Swagger UI on /schema and /schema/swagger: the schema is fetched, not written into the
// page, so that the page runs no script of its own (its Content-Security-Policy allows none).
window.ui = SwaggerUIBundle({
  url: "/schema/openapi.json",
  dom_id: "#swagger-container",
  deepLinking: true,
  showExtensions: true,
  showCommonExtensions: true,
  presets: [SwaggerUIBundle.presets.apis, SwaggerUIBundle.SwaggerUIStandalonePreset],
});
