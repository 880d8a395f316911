"""GET /openapi.json is an OpenAPI 3.1 document of exactly the routes the application serves.

The set of (path, method) pairs is compared with the routes of the
application that `feeds.app.create_app` builds, so a route added or removed
without the document (or the other way round) fails here. The structure is
checked against the fixed fields of the OpenAPI 3.1.0 objects that the
document uses.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import Server
from starlette.routing import Route

from feeds.app import create_app

METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")

# Fixed fields of the OpenAPI 3.1.0 objects (section 4.8); "x-" fields are extensions.
INFO_FIELDS = {"title", "summary", "description", "termsOfService", "contact", "license", "version"}
PATH_ITEM_FIELDS = {"$ref", "summary", "description", "servers", "parameters", *METHODS}
OPERATION_FIELDS = {
    "tags",
    "summary",
    "description",
    "externalDocs",
    "operationId",
    "parameters",
    "requestBody",
    "responses",
    "callbacks",
    "deprecated",
    "security",
    "servers",
}
PARAMETER_FIELDS = {
    "name",
    "in",
    "description",
    "required",
    "deprecated",
    "allowEmptyValue",
    "style",
    "explode",
    "allowReserved",
    "schema",
    "example",
    "examples",
    "content",
}
HEADER_FIELDS = PARAMETER_FIELDS - {"name", "in"}
REQUEST_BODY_FIELDS = {"description", "content", "required"}
RESPONSE_FIELDS = {"description", "headers", "content", "links"}
MEDIA_TYPE_FIELDS = {"schema", "example", "examples", "encoding"}
STATUS_CODE = re.compile(r"default|[1-5](\d\d|XX)")


@pytest.fixture(scope="module")
def document(shared_server: Server) -> dict[str, Any]:
    response = httpx.get(f"{shared_server.url}/openapi.json", timeout=30.0)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    body: dict[str, Any] = response.json()
    return body


def routed_operations(tmp_path: Path) -> set[tuple[str, str]]:
    """The (path, method) pairs the application routes, in OpenAPI's spelling.

    HEAD is left out (Starlette adds it to every GET route), and so are
    mounts such as the static files, which are not API operations.
    """
    app = create_app(tmp_path)
    pairs: set[tuple[str, str]] = set()
    for route in app.routes:
        if not isinstance(route, Route) or route.methods is None:
            continue
        # Starlette writes a converter into the template, "{name:int}"; OpenAPI does not.
        path = re.sub(r"\{(\w+):[^}]*\}", r"{\1}", route.path)
        pairs.update((path, method.lower()) for method in route.methods if method != "HEAD")
    return pairs


def documented_operations(document: dict[str, Any]) -> set[tuple[str, str]]:
    return {
        (path, method)
        for path, item in document["paths"].items()
        for method in item
        if method in METHODS
    }


def operations(document: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in document["paths"].items():
        for method in METHODS:
            if method in item:
                yield path, method, item[method]


def unknown_fields(value: dict[str, Any], allowed: set[str]) -> set[str]:
    return {name for name in value if name not in allowed and not name.startswith("x-")}


def test_the_document_describes_exactly_the_routes(
    document: dict[str, Any], tmp_path: Path
) -> None:
    routed = routed_operations(tmp_path)
    documented = documented_operations(document)
    assert routed - documented == set(), "routes missing from /openapi.json"
    assert documented - routed == set(), "operations in /openapi.json that no route serves"


def test_the_routes_include_the_publish_and_read_endpoints(tmp_path: Path) -> None:
    # Guards the comparison above against an app whose routes it cannot see.
    assert {("/events", "post"), ("/events", "get"), ("/openapi.json", "get")} <= routed_operations(
        tmp_path
    )


def test_the_document_is_openapi_3_1(document: dict[str, Any]) -> None:
    assert document["openapi"] == "3.1.0"
    assert isinstance(document["info"]["title"], str) and document["info"]["title"]
    assert isinstance(document["info"]["version"], str) and document["info"]["version"]
    assert unknown_fields(document["info"], INFO_FIELDS) == set()
    assert isinstance(document["paths"], dict) and document["paths"]


def test_every_path_item_and_operation_has_only_openapi_fields(document: dict[str, Any]) -> None:
    for path, item in document["paths"].items():
        assert path.startswith("/"), path
        assert unknown_fields(item, PATH_ITEM_FIELDS) == set(), path
    for path, method, operation in operations(document):
        assert unknown_fields(operation, OPERATION_FIELDS) == set(), (path, method)


def test_operation_ids_are_unique(document: dict[str, Any]) -> None:
    ids = [operation.get("operationId") for _, _, operation in operations(document)]
    assert all(isinstance(i, str) and i for i in ids), ids
    assert len(ids) == len(set(ids)), ids


def test_every_operation_has_described_responses(document: dict[str, Any]) -> None:
    for path, method, operation in operations(document):
        responses = operation.get("responses")
        assert isinstance(responses, dict) and responses, (path, method)
        for status, response in responses.items():
            where = (path, method, status)
            assert STATUS_CODE.fullmatch(status), where
            assert isinstance(response.get("description"), str), where
            assert unknown_fields(response, RESPONSE_FIELDS) == set(), where
            for header in response.get("headers", {}).values():
                assert unknown_fields(header, HEADER_FIELDS) == set(), where


def test_parameters_are_well_formed_and_match_the_path_template(document: dict[str, Any]) -> None:
    for path, method, operation in operations(document):
        item_parameters = document["paths"][path].get("parameters", [])
        parameters = [*item_parameters, *operation.get("parameters", [])]
        for parameter in parameters:
            where = (path, method, parameter.get("name"))
            assert isinstance(parameter.get("name"), str), where
            assert parameter.get("in") in ("query", "header", "path", "cookie"), where
            assert unknown_fields(parameter, PARAMETER_FIELDS) == set(), where
            assert ("schema" in parameter) != ("content" in parameter), where
        in_path = {p["name"] for p in parameters if p["in"] == "path"}
        assert in_path == set(re.findall(r"\{(\w+)\}", path)), (path, method)
        assert all(p.get("required") is True for p in parameters if p["in"] == "path"), path


def media_types(document: dict[str, Any]) -> Iterator[tuple[tuple[str, ...], dict[str, Any]]]:
    for path, method, operation in operations(document):
        body = operation.get("requestBody")
        if body is not None:
            for name, media in body.get("content", {}).items():
                yield (path, method, "requestBody", name), media
        for status, response in operation.get("responses", {}).items():
            for name, media in response.get("content", {}).items():
                yield (path, method, status, name), media


def test_request_bodies_have_only_openapi_fields(document: dict[str, Any]) -> None:
    for path, method, operation in operations(document):
        body = operation.get("requestBody")
        if body is not None:
            assert isinstance(body.get("content"), dict) and body["content"], (path, method)
            assert unknown_fields(body, REQUEST_BODY_FIELDS) == set(), (path, method)


def test_media_types_have_only_openapi_fields(document: dict[str, Any]) -> None:
    for where, media in media_types(document):
        assert unknown_fields(media, MEDIA_TYPE_FIELDS) == set(), where


def references(value: Any) -> Iterator[str]:
    if isinstance(value, dict):
        for name, member in value.items():
            if name == "$ref" and isinstance(member, str):
                yield member
            else:
                yield from references(member)
    elif isinstance(value, list):
        for member in value:
            yield from references(member)


def resolve(document: dict[str, Any], reference: str) -> Any:
    assert reference.startswith("#/"), f"{reference} is not a reference inside the document"
    target: Any = document
    for part in reference[2:].split("/"):
        part = part.replace("~1", "/").replace("~0", "~")
        assert isinstance(target, dict) and part in target, f"{reference} points nowhere"
        target = target[part]
    return target


def test_every_reference_resolves(document: dict[str, Any]) -> None:
    found = list(references(document))
    assert found
    for reference in found:
        assert resolve(document, reference) is not None, reference


def test_the_problem_schema_has_the_rfc_9457_members(document: dict[str, Any]) -> None:
    problem = document["components"]["schemas"]["Problem"]
    assert {"type", "title", "status", "detail"} <= set(problem["required"])
    assert {"index", "attribute", "message"} <= set(
        problem["properties"]["errors"]["items"]["required"]
    )
