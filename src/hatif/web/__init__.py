"""Hatif's web side: the HTTP API (`api`), its token authentication (`auth`) and an uvicorn server that runs
inside Hatif's own asyncio loop (`server`)."""

from hatif.web.api import create_api
from hatif.web.server import ApiServer, serve_api

__all__ = ["ApiServer", "create_api", "serve_api"]
