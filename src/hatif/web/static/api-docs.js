// The API reference page: Swagger UI over Hatif's own OpenAPI document, from Hatif's own server.
// A file of its own (not an inline script) so that the page's Content-Security-Policy allows scripts from
// this origin only.
window.addEventListener("load", () => {
  window.ui = SwaggerUIBundle({
    url: document.body.dataset.openapi,
    dom_id: "#api",
    deepLinking: true,
    presets: [SwaggerUIBundle.presets.apis],
    layout: "BaseLayout",
    validatorUrl: null,
    tryItOutEnabled: false,
  });
});
