// Shipyard API docs: starts Swagger UI (vendored) on the schema at /openapi.json.
// A file of its own rather than an inline script: the Content Security Policy runs
// scripts from this origin only. Requests made with "Try it out" carry the session's
// CSRF token, as the pages' own do.
"use strict";

const holder = document.getElementById("swagger-ui");
window.ui = SwaggerUIBundle({
  url: holder.dataset.openapiUrl,
  dom_id: "#swagger-ui",
  layout: "BaseLayout",
  deepLinking: true,
  showExtensions: true,
  showCommonExtensions: true,
  presets: [SwaggerUIBundle.presets.apis, SwaggerUIBundle.SwaggerUIStandalonePreset],
  requestInterceptor: (request) => {
    request.headers["X-CSRF-Token"] = holder.dataset.csrf;
    return request;
  },
});
