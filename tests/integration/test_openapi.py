# contrib/openapi.yaml against the route table of src/http/httpd.c: every route
# and method documented, nothing documented that is not routed, every
# operation with its error responses.  No server needed.
#
# Runs under Debian's /usr/bin/python3 (python3-yaml).

import os
import re

import yaml

import ofharness

ROUTE = re.compile(r'\{\s*"(/[^"]*)"\s*,\s*([A-Z_| ]+?)\s*,\s*\w+\s*\}')


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
            if path.startswith("/api/orders"):
                assert {"400", "401", "429", "503"} <= codes, (path, method, codes)
            if "{" in path and path.startswith("/api/orders"):
                assert "404" in codes, (path, method)
            for p in op.get("parameters", []):
                if p["in"] == "path":
                    assert "{%s}" % p["name"] in path, (path, p["name"])
