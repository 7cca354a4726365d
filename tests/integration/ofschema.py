# Every answer the integration tests receive from a documented route is
# checked against contrib/openapi.yaml: the status must be documented for
# the operation, and a JSON body must validate against its schema (JSON
# Schema 2020-12, python3-jsonschema), so the document cannot drift from
# the daemon.  ofharness calls check() for each response; a mismatch is
# raised where the test made the request.
#
# Runs under Debian's /usr/bin/python3 (python3-yaml, python3-jsonschema).

import json
import os
import re
import threading

import yaml
from jsonschema import Draft202012Validator, RefResolver

_lock = threading.Lock()
_state = {}


class SchemaMismatch(AssertionError):
    pass


def _load(srcdir):
    with _lock:
        if "doc" not in _state:
            doc = yaml.safe_load(open(os.path.join(srcdir, "contrib", "openapi.yaml")))
            routes = []
            for path, ops in doc["paths"].items():
                rx = "^" + re.sub(r"\\\{[^}]*\\\}", "[^/]+", re.escape(path)) + "$"
                routes.append((path.count("{"), path, re.compile(rx), ops))
            # Literal segments win over parameters, as in the daemon's table.
            routes.sort(key=lambda r: r[0])
            _state["doc"] = doc
            _state["routes"] = routes
            _state["resolver"] = RefResolver.from_schema(doc)
    return _state["doc"], _state["routes"], _state["resolver"]


def _deref(doc, obj):
    while isinstance(obj, dict) and "$ref" in obj:
        node = doc
        for part in obj["$ref"].lstrip("#/").split("/"):
            node = node[part]
        obj = node
    return obj


def check(srcdir, method, target, status, content_type, body):
    """Raise SchemaMismatch when a documented route's answer disagrees with the document."""
    doc, routes, resolver = _load(srcdir)
    path = target.split("?", 1)[0]
    for _, pattern, rx, ops in routes:
        if rx.match(path):
            break
    else:
        return
    op = ops.get("get" if method.upper() == "HEAD" else method.lower())
    if op is None:
        return      # 405: the route table's business (test_openapi)
    resp = op["responses"].get(str(status))
    if resp is None:
        raise SchemaMismatch("%s %s answered %d, which contrib/openapi.yaml does not document "
                             "for %s %s" % (method, target, status, method, pattern))
    resp = _deref(doc, resp)
    ctype = (content_type or "").split(";")[0].strip()
    if method.upper() == "HEAD" or not body or ctype != "application/json":
        return
    schema = (resp.get("content") or {}).get("application/json", {}).get("schema")
    if schema is None:
        raise SchemaMismatch("%s %s answered %d with JSON, but the document gives that answer "
                             "no JSON schema (%s)" % (method, target, status, pattern))
    try:
        value = json.loads(body)
    except ValueError as e:
        raise SchemaMismatch("%s %s answered %d with a body that is not JSON: %s"
                             % (method, target, status, e))
    errors = sorted(Draft202012Validator(schema, resolver=resolver).iter_errors(value),
                    key=lambda e: list(e.absolute_path))
    if errors:
        e = errors[0]
        raise SchemaMismatch("%s %s answered %d against the schema of %s: at $%s: %s"
                             % (method, target, status, pattern,
                                "".join("[%r]" % p for p in e.absolute_path), e.message[:300]))
