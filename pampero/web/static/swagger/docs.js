// Swagger UI over this server's /openapi.json. "Authorize" takes the API key; the playground's
// key (localStorage) is offered too, so "Try it out" works on a keyed server.
window.ui = SwaggerUIBundle({
  url: "/openapi.json",
  dom_id: "#swagger-ui",
  deepLinking: true,
  persistAuthorization: false,
  onComplete: () => {
    const key = window.localStorage.getItem("pampero.apiKey");
    if (key) window.ui.preauthorizeApiKey("bearer", key);
  },
});
