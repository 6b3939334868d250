"""The API reference page at `/api/v1/docs`: Swagger UI reading `/api/v1/openapi.json`, every file served by
Hatif.

FastAPI's own page loads Swagger UI from a CDN, which a self-hosted center must not need (and a page must not
fetch code from elsewhere at run time). The Swagger UI files come from the `fastapi-offline` package,
installed with Hatif; the page's one script of ours is a file, so the Content-Security-Policy allows scripts
from this origin only, and the "validator" badge (which calls swagger.io) is off.
"""

from __future__ import annotations

import html
from pathlib import Path

import fastapi_offline
from fastapi import APIRouter, FastAPI
from fastapi.responses import HTMLResponse
from starlette.staticfiles import StaticFiles

STATIC = Path(__file__).parent / "static"
SWAGGER_UI = Path(fastapi_offline.__file__).parent / "static"
"""Swagger UI 5 (OpenAPI 3.1, which FastAPI writes), as the `fastapi-offline` package ships it."""

CSP = ("default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
       "connect-src 'self'; font-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
"""Swagger UI sets inline styles on its elements; nothing else is loosened."""

_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<link rel="stylesheet" href="{assets}/swagger-ui.css">
<link rel="icon" type="image/png" href="{assets}/favicon.png">
</head>
<body data-openapi="{openapi}">
<div id="api"></div>
<script src="{assets}/swagger-ui-bundle.js"></script>
<script src="{docs}/static/api-docs.js"></script>
</body>
</html>
"""


def add_docs(app: FastAPI, prefix: str) -> None:
    """Serve the reference page of `app`'s OpenAPI document under `prefix` (e.g. `/api/v1`)."""
    docs = f"{prefix}/docs"
    assets = f"{docs}/swagger-ui"
    page = _PAGE.format(title=html.escape(f"{app.title} API {app.version}"), assets=assets, docs=docs,
                        openapi=html.escape(app.openapi_url or f"{prefix}/openapi.json"))
    router = APIRouter()

    @router.get(docs, include_in_schema=False)
    async def reference() -> HTMLResponse:
        return HTMLResponse(page, headers={"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff",
                                           "Referrer-Policy": "no-referrer"})

    app.include_router(router)
    app.mount(f"{docs}/static", StaticFiles(directory=STATIC), name="api-docs-static")
    app.mount(assets, StaticFiles(directory=SWAGGER_UI), name="swagger-ui")
