// Swagger UI over our OpenAPI document, from files this server ships (no CDN, no inline script).
window.addEventListener("load", () => {
  window.ui = SwaggerUIBundle({ url: "/api/openapi.json", dom_id: "#swagger-ui" });
});
