# contrib/openapi.yaml against the route table of src/http/httpd.c: every route
# and method documented, nothing documented that is not routed, every
# operation with its error responses; and the document through a real
# OpenAPI 3.1 validator (tests/openapi/validate.js).  No server needed.
#
# Runs under Debian's /usr/bin/python3 (python3-yaml); the validator needs
# Node.js and `npm ci --prefix tests/openapi` in the source tree.

import os
import re
import shutil
import subprocess

import pytest
import yaml

import ofharness

ROUTE = re.compile(r'\{\s*"(/[^"]*)"\s*,\s*([A-Z_| ]+?)\s*,\s*\w+\s*\}')

# The dashboard: authenticated, rate limited, scoped by the creator.
DASHBOARD = ("/api/orders", "/api/workflows", "/api/inventory", "/api/shops", "/api/events")

# Operations on a path with a parameter that never answer 404: they create
# what the path names when it is missing (upserts).
CREATES = {
    ("/api/inventory/{sku}", "put"),
    ("/api/workflows/definitions/{name}", "put"),
}


def routes():
    src = open(os.path.join(ofharness.srcdir(), "src", "http", "httpd.c")).read()
    table = src[src.index("httpd_routes[] = {"):]
    table = table[:table.index("};")]
    out = {}
    for path, methods in ROUTE.findall(table):
        out.setdefault(path, set()).update(m.strip().replace("HTTPD_", "").lower()
                                           for m in methods.split("|"))
    assert out, "no routes found in src/http/httpd.c"
    return out


def spec():
    return yaml.safe_load(open(os.path.join(ofharness.srcdir(), "contrib", "openapi.yaml")))


def is_dashboard(path):
    return any(path == p or path.startswith(p + "/") for p in DASHBOARD)


def test_every_route_documented_and_nothing_else():
    doc, table = spec(), routes()
    assert doc["openapi"].startswith("3.1")
    documented = {p: {m for m in ops if m in ("get", "post", "put", "patch", "delete")}
                  for p, ops in doc["paths"].items()}
    assert documented == table


def test_every_operation_documents_its_errors():
    doc = spec()
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            codes = set(op["responses"])
            assert any(c.startswith("2") for c in codes), (path, method)
            if is_dashboard(path):
                assert {"400", "401", "403", "429", "503"} <= codes, (path, method, codes)
                if "{" in path and (path, method) not in CREATES:
                    assert "404" in codes, (path, method)
            for p in op.get("parameters", []):
                if p["in"] == "path":
                    assert "{%s}" % p["name"] in path, (path, p["name"])


def test_dashboard_operations_are_authenticated():
    doc = spec()
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            if is_dashboard(path):
                assert op.get("security") == [{"bearerJwt": []}, {"apiKey": []}], (path, method)


def test_openapi_validator():
    # OF_NODE_MODULES: a node_modules holding the validator elsewhere (e.g. for
    # make distcheck, whose source tree has none): OF_NODE_MODULES=$PWD/tests/openapi/node_modules
    src = ofharness.srcdir()
    modules = os.environ.get("OF_NODE_MODULES") or os.path.join(src, "tests", "openapi", "node_modules")
    node = shutil.which("node") or "/usr/bin/node"
    if not os.access(node, os.X_OK):
        pytest.fail("Node.js (node) is needed for tests/openapi/validate.js: "
                    "install nodejs, then run `npm ci --prefix tests/openapi` in %s" % src)
    if not os.path.isdir(os.path.join(modules, "@readme", "openapi-parser")):
        pytest.fail("%s is missing the validator: run `npm ci --prefix tests/openapi` in %s"
                    % (modules, src))
    env = dict(os.environ, NODE_PATH=os.path.abspath(modules))
    proc = subprocess.run([node, os.path.join("tests", "openapi", "validate.js"),
                           os.path.join("contrib", "openapi.yaml")],
                          cwd=src, env=env, capture_output=True, text=True, timeout=300)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0 and re.search(r"^ok 1 ", proc.stdout, re.M), \
        "tests/openapi/validate.js (exit %d):\n%s" % (proc.returncode, out)


def test_answers_are_checked_against_the_document():
    """ofschema, which ofharness runs on every answer, refuses what the document does not say."""
    import ofschema
    src = ofharness.srcdir()
    ok = b'{"error":{"code":"not_found","message":"no such order"}}'
    ofschema.check(src, "GET", "/api/orders/x", 404, "application/json", ok)
    with pytest.raises(ofschema.SchemaMismatch, match="does not document"):
        ofschema.check(src, "GET", "/api/orders/x", 418, "application/json", ok)
    with pytest.raises(ofschema.SchemaMismatch, match="against the schema"):
        ofschema.check(src, "GET", "/api/orders/x", 404, "application/json", b'{"error":"flat"}')
    with pytest.raises(ofschema.SchemaMismatch, match="against the schema"):
        ofschema.check(src, "GET", "/api/shops", 200, "application/json",
                       b'{"shops":[{"id":"x","access_token":"leak"}]}')
    # Literal segments before parameters, as in the daemon's table.
    with pytest.raises(ofschema.SchemaMismatch, match="/api/orders/bulk/status"):
        ofschema.check(src, "POST", "/api/orders/bulk/status", 418, "application/json", ok)
    ofschema.check(src, "GET", "/nope", 404, "application/json", ok)   # not a documented route
