"""The API's refusals: `ApiError` (status, stable code, sentence) and the ones every route shares.

Apart from `api` so that `auth` and the routers of each area raise them without importing the application.
"""

from __future__ import annotations

from collections.abc import Mapping

from ..errors import WebError


class ApiError(WebError):
    """An answer other than success: HTTP status, stable code, sentence."""

    def __init__(self, status: int, code: str, message: str, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = dict(headers or {})


UNAUTHORIZED = ApiError(401, "unauthorized", "a valid API token is required: Authorization: Bearer <token>",
                        {"WWW-Authenticate": 'Bearer realm="hatif"'})
CSRF_REFUSED = ApiError(403, "csrf", "a request that changes something needs the session's X-CSRF-Token header "
                        "(given at sign-in)")


def forbidden(scope: str) -> ApiError:
    return ApiError(403, "forbidden", f"this needs the scope {scope}, which this role or token does not have")


def not_found(what: str) -> ApiError:
    return ApiError(404, "not_found", f"no {what}")
