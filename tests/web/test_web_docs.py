"""The API reference page at /api/v1/docs: served whole by Hatif (no CDN), scripts from this origin only."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient


def test_the_reference_page_loads_everything_from_hatif(client: TestClient) -> None:
    r = client.get("/api/v1/docs")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    csp = r.headers["content-security-policy"]
    assert "script-src 'self';" in csp and "default-src 'none'" in csp
    assert "<script>" not in r.text  # no inline script: the policy would refuse it
    urls = re.findall(r'(?:src|href)="([^"]+)"', r.text)
    assert len(urls) >= 4
    for url in urls:
        assert url.startswith("/api/v1/docs/"), url  # nothing from another origin
        asset = client.get(url)
        assert asset.status_code == 200 and len(asset.content) > 200, url
    assert 'data-openapi="/api/v1/openapi.json"' in r.text


def test_the_schema_names_every_route(client: TestClient) -> None:
    paths = client.get("/api/v1/openapi.json").json()["paths"]
    for path in ("/api/v1/calls", "/api/v1/calls/{call_id}", "/api/v1/voicemail/{mailbox}", "/api/v1/queue-log"):
        assert path in paths


def test_an_asset_outside_the_bundle_is_404(client: TestClient) -> None:
    assert client.get("/api/v1/docs/swagger-ui/../../../etc/passwd").status_code == 404
    assert client.get("/api/v1/docs/static/nothing.js").status_code == 404
