from __future__ import annotations

import re

import httpx
import pytest
from openapi_spec_validator import validate
from starlette.routing import BaseRoute, Mount, Route

from service.app import routes
from service.http.openapi import NOT_IN_SPEC, build_spec

pytestmark = pytest.mark.anyio


def route_operations(
    app_routes: list[BaseRoute] = routes, prefix: str = ""
) -> set[tuple[str, str]]:
    """Every (method, path) the app serves, but for what NOT_IN_SPEC names (whole mounts)."""
    found = set()
    for route in app_routes:
        assert isinstance(route, Route | Mount), route
        if prefix + route.path in NOT_IN_SPEC:
            continue
        if isinstance(route, Mount):
            found |= route_operations(list(route.routes), prefix + route.path)
            continue
        path = re.sub(r"\{(\w+):\w+\}", r"{\1}", prefix + route.path)
        for method in route.methods or ():
            if method != "HEAD":
                found.add((method.lower(), path))
    return found


class TestSpec:
    def test_is_valid_openapi_3_1(self) -> None:
        spec = build_spec()
        assert spec["openapi"] == "3.1.0"
        validate(spec)

    def test_documents_every_route_and_nothing_else(self) -> None:
        documented = {
            (method, path) for path, item in build_spec()["paths"].items() for method in item
        }
        assert documented == route_operations()

    def test_html_pages_are_left_out_explicitly(self) -> None:
        served = {route.path for route in routes}
        assert {"/portal", "/docs", "/openapi.json"} <= served
        assert not any(path.startswith("/portal") for path in build_spec()["paths"])

    def test_schemas_come_from_the_models(self) -> None:
        schemas = build_spec()["components"]["schemas"]
        create = schemas["WebhookCreate"]
        assert create["required"] == ["url", "events"]
        assert create["properties"]["secret"]["anyOf"][0]["minLength"] == 8
        assert create["additionalProperties"] is False
        assert "secret" in schemas["Webhook"]["properties"]  # the create-only field
        assert schemas["ErrorDetail"]["required"] == ["code", "message"]

    def test_the_spec_says_what_the_server_enforces(self) -> None:
        spec = build_spec()
        schemas, paths = spec["components"]["schemas"], spec["paths"]
        for path in ("/api/webhooks/manage", "/api/events"):
            [limit] = [p for p in paths[path]["get"]["parameters"] if p["name"] == "limit"]
            assert (limit["schema"]["minimum"], limit["schema"]["maximum"]) == (1, 1000)
        assert schemas["WebhookCreate"]["properties"]["url"]["pattern"] == "^https?://"
        assert schemas["RecoverRequest"]["properties"]["since"]["format"] == "date-time"
        test_type = schemas["SyntheticEventRequest"]["properties"]["type"]["enum"]
        assert {"bounce", "email.bounce", "open", "email.open"} <= set(test_type)
        deliveries = paths["/api/webhooks/manage/{webhook_id}/deliveries"]["get"]
        [status] = [p for p in deliveries["parameters"] if p["name"] == "status"]
        assert status["schema"]["enum"] == ["pending", "succeeded", "failed"]

    def test_what_the_tracking_urls_answer(self) -> None:
        paths = build_spec()["paths"]
        pixel = paths["/t/o/{token}"]["get"]["responses"]["200"]
        assert list(pixel["content"]) == ["image/gif"]
        assert "Cache-Control" in pixel["headers"]
        assert "Location" in paths["/t/c/{token}"]["get"]["responses"]["302"]["headers"]
        assert list(paths["/t/u/{token}"]["get"]["responses"]["200"]["content"]) == ["text/html"]

    def test_the_rate_limit_and_the_operational_events(self) -> None:
        spec = build_spec()
        schemas = spec["components"]["schemas"]
        for model in ("WebhookCreate", "WebhookUpdate"):
            [limit, _] = schemas[model]["properties"]["rate_limit"]["anyOf"]
            assert (limit["minimum"], limit["maximum"]) == (1, 10_000)
        assert "rate_limit" in schemas["Webhook"]["properties"]
        assert set(spec["webhooks"]) == {"emailEvent", "webhookDisabled", "deliveryExhausted"}
        for name, payload, data in (
            ("webhookDisabled", "WebhookDisabledPayload", "WebhookDisabledData"),
            ("deliveryExhausted", "DeliveryExhaustedPayload", "DeliveryExhaustedData"),
        ):
            body = spec["webhooks"][name]["post"]["requestBody"]["content"]["application/json"]
            assert body["schema"]["$ref"] == f"#/components/schemas/{payload}"
            assert schemas[payload]["required"] == ["id", "type", "created_at", "data"]
            assert schemas[payload]["properties"]["data"]["$ref"].endswith(f"/{data}")
        reasons = schemas["WebhookDisabledData"]["properties"]["reason"]["enum"]
        assert sorted(reasons) == ["failing", "gone"]

    def test_each_route_names_the_keys_it_takes(self) -> None:
        spec = build_spec()
        paths = spec["paths"]
        in_account = [{"accountKey": []}, {"adminKey": [], "accountId": []}]
        assert paths["/api/webhooks/manage"]["post"]["security"] == in_account
        assert paths["/api/emails"]["post"]["security"] == in_account
        assert paths["/api/accounts"]["post"]["security"] == [{"adminKey": []}]
        assert paths["/api/accounts/{account_id}/keys"]["post"]["security"] == [{"adminKey": []}]
        assert paths["/healthz"]["get"]["security"] == []
        assert paths["/api/webhooks"]["post"]["security"] == []
        # The tracking URLs are public: their signed token is the credential.
        for path, method in (
            ("/t/o/{token}", "get"),
            ("/t/c/{token}", "get"),
            ("/t/u/{token}", "get"),
            ("/t/u/{token}", "post"),
        ):
            assert paths[path][method]["security"] == []
        assert paths["/api/tracking"]["post"]["security"] == in_account
        assert paths["/api/suppressions/{email}"]["get"]["security"] == in_account
        schemes = spec["components"]["securitySchemes"]
        assert schemes["accountId"] == {
            "type": "apiKey",
            "in": "header",
            "name": "X-Account-Id",
            "description": "With an admin key: the account (acc_…) to act in",
        }
        used = {
            name for op in paths.values() for m in op.values() for r in m["security"] for name in r
        }
        assert used == set(schemes)


class TestServed:
    async def test_openapi_json(self, client: httpx.AsyncClient) -> None:
        response = await client.get("/openapi.json")
        assert response.status_code == 200
        assert response.json() == build_spec()

    async def test_docs_page_loads_nothing_from_the_internet(
        self, client: httpx.AsyncClient
    ) -> None:
        page = await client.get("/docs")
        assert page.status_code == 200
        assert "text/html" in page.headers["content-type"]
        assert not re.search(r"(src|href)=\"(https?:)?//", page.text)
        assets = re.findall(r"(?:src|href)=\"(/docs/assets/[^\"]+)\"", page.text)
        assert len(assets) == 2
        for asset in assets:
            response = await client.get(asset)
            assert response.status_code == 200
            assert len(response.content) > 10_000
