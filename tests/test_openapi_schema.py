"""The OpenAPI schema at /api/schema/: valid, complete, every management operation documented."""

from __future__ import annotations

import re

import pytest
from django.urls import URLPattern, URLResolver, get_resolver
from drf_spectacular.validation import validate_schema
from rest_framework.test import APIClient

# Every management-API route and its methods (besides HEAD / OPTIONS).
EXPECTED = {
    "/api/v1/usage": {"get"},
    "/api/v1/usage/export.csv": {"get"},
    "/api/v1/credits": {"get"},
    "/api/v1/limits": {"get"},
    "/api/v1/spending-caps": {"get", "post"},
    "/api/v1/spending-caps/{id}": {"get", "patch", "delete"},
    "/api/v1/provider-keys": {"get", "post"},
    "/api/v1/provider-keys/{id}": {"get", "patch", "delete"},
    "/api/v1/provider-keys/{id}/replace": {"post"},
    "/api/v1/settings": {"get", "put", "patch"},
    "/api/v1/settings/me": {"get", "put", "patch"},
    "/api/v1/api-keys": {"get", "post"},
    "/api/v1/api-keys/{id}": {"get"},
    "/api/v1/api-keys/{id}/revoke": {"post"},
    "/api/v1/members": {"get"},
    "/api/v1/members/{id}": {"get", "patch", "delete"},
    "/api/v1/members/invite": {"post"},
    "/api/v1/invitations": {"get"},
    "/api/v1/invitations/{id}": {"delete"},
    "/api/v1/audit-log": {"get"},
    "/api/v1/staff/providers": {"get", "post"},
    "/api/v1/staff/providers/{id}": {"get", "patch"},
    "/api/v1/staff/catalog-models": {"get"},
    "/api/v1/staff/catalog-models/{id}": {"get", "patch"},
    "/api/v1/staff/catalog-models/set-enabled": {"post"},
    "/api/v1/staff/routing-policies": {"get"},
    "/api/v1/staff/routing-policies/{power_level}": {"get", "patch"},
}
METHODS = {"get", "post", "put", "patch", "delete"}


@pytest.fixture(scope="module")
def schema(django_db_blocker) -> dict:
    with django_db_blocker.unblock():
        response = APIClient().get("/api/schema/", {"format": "json"})
    assert response.status_code == 200
    return response.json()


def routed_api_paths() -> set[str]:
    """Every /api/v1/ URL the project routes, in OpenAPI's spelling ({id} for a pk)."""
    found: set[str] = set()

    def walk(patterns, prefix: str) -> None:
        for pattern in patterns:
            route = prefix + str(pattern.pattern)
            if isinstance(pattern, URLResolver):
                walk(pattern.url_patterns, route)
            elif isinstance(pattern, URLPattern) and route.startswith("api/v1/"):
                path = re.sub(r"<(?:\w+:)?pk>", "{id}", route)
                found.add("/" + re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", path))

    walk(get_resolver().url_patterns, "")
    return found


def operations(schema: dict):
    for path, item in schema["paths"].items():
        if path.startswith("/api/v1/"):
            for method, operation in item.items():
                if method in METHODS:
                    yield path, method, operation


def test_the_schema_is_valid_openapi(schema):
    assert schema["openapi"].startswith("3.")
    validate_schema(schema)


def test_every_management_route_and_method_is_documented(schema):
    documented = {
        path: {m for m in item if m in METHODS}
        for path, item in schema["paths"].items()
        if path.startswith("/api/v1/")
    }

    assert documented == EXPECTED
    assert routed_api_paths() == set(EXPECTED)


def test_every_operation_is_described_and_answers_errors_as_detail(schema):
    operation_ids = []
    for path, method, operation in operations(schema):
        where = f"{method.upper()} {path}"
        operation_ids.append(operation["operationId"])
        assert operation.get("summary"), where
        assert operation.get("tags"), where
        for status in ("401", "403"):
            content = operation["responses"][status]["content"]["application/json"]
            assert content["schema"] == {"$ref": "#/components/schemas/Error"}, where
    assert len(operation_ids) == len(set(operation_ids))
    assert schema["components"]["schemas"]["Error"]["required"] == ["detail"]


def test_secrets_are_write_only_in_the_schema(schema):
    components = schema["components"]["schemas"]

    for name in ("ProviderKey", "ProviderKeyChecked"):
        assert "secret" not in components[name]["properties"], name
    assert "secret" in components["ProviderKeyCreate"]["properties"]
    assert "key" in components["APIKeyCreated"]["properties"]
    assert "key" not in components["APIKey"]["properties"]
    assert "key_hash" not in str(components)


def test_the_docs_page_is_served(db):
    response = APIClient().get("/api/docs/")

    assert response.status_code == 200
    assert b"swagger" in response.content.lower()
