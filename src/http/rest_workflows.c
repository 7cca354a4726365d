/*
 * rest_workflows: the needs-attention inbox, workflow definitions and rules.
 *
 * Definitions and rules are validated here (wf_def, wf_cond) before they
 * are stored; a stored one tells every worker's engine to read the
 * creator's again (wf_forget_creator).  Versions of a definition are
 * immutable rows; the rules are one versioned document per creator.
 */
#include "config.h"

#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "orderflow/config.h"
#include "orderflow/httpd.h"
#include "orderflow/log.h"
#include "orderflow/pg.h"
#include "orderflow/rest.h"
#include "orderflow/rest_workflows.h"
#include "orderflow/util.h"
#include "orderflow/wf.h"
#include "orderflow/wf_def.h"
#include "orderflow/wf_step.h"
#include "orderflow/worker.h"

/* Largest definition or rules document accepted, serialized. */
#define REST_WF_DOC_MAX (64 * 1024)

static const char rest_wf_inbox_sql[] =
    "SELECT w.id::text, w.order_id::text, o.tiktok_order_id, o.order_number, w.workflow_name,"
    " w.workflow_status::text, w.current_step, w.wait_kind, to_json(w.waiting_since) #>> '{}',"
    " to_json(w.deadline_at) #>> '{}', w.last_error, w.error_count, w.version, w.terminal,"
    " w.attempt, to_json(w.updated_at) #>> '{}',"
    " CASE WHEN w.deadline_at IS NULL THEN 'Infinity'"
    "  ELSE (extract(epoch FROM w.deadline_at) * 1000000)::bigint::text END,"
    /* At risk: TikTok's ship-by time comes within shipping.sla_warning, not shipped. */
    " $6::bigint > 0 AND o.order_status IN ('confirmed', 'processing')"
    "  AND o.rts_sla_time < now() + $6::bigint * interval '1 millisecond'"
    " FROM order_workflows w JOIN orders o ON o.id = w.order_id"
    " WHERE w.user_id = $1::uuid AND (w.workflow_status::text = ANY ($2::text[])"
    "  OR ($6::bigint > 0 AND w.workflow_status = 'running' AND o.order_status IN ('confirmed',"
    "  'processing') AND o.rts_sla_time < now() + $6::bigint * interval '1 millisecond'))"
    " AND ($3::text IS NULL OR (coalesce(w.deadline_at, 'infinity'), w.id) >"
    "  (CASE WHEN $3 = 'Infinity' THEN 'infinity'::timestamptz"
    "   ELSE 'epoch'::timestamptz + $3::bigint * interval '1 microsecond' END, $4::uuid))"
    " ORDER BY coalesce(w.deadline_at, 'infinity'), w.id LIMIT $5::integer";

/*
 * Shops that need the creator: paused, deauthorized, or whose grant TikTok
 * will not renew or whose refresh token runs out within a week.  Their
 * events wait in the inbox until the shop runs again.
 */
static const char rest_wf_inbox_shops_sql[] =
    "SELECT coalesce(json_agg(json_build_object('id', s.id, 'tiktok_shop_id', s.tiktok_shop_id,"
    " 'name', s.shop_name, 'status', s.status, 'reason', coalesce(s.paused_reason, a.error,"
    "  'the authorization expires on ' || to_char(a.refresh_token_expires_at, 'YYYY-MM-DD')),"
    " 'action', CASE WHEN s.status = 'paused' AND coalesce(a.status, 'active') = 'active'"
    "  THEN 'resume' ELSE 'reconnect' END,"
    " 'pending_events', (SELECT count(*) FROM webhook_events e WHERE e.shop_id = s.id"
    "  AND e.processed_at IS NULL AND e.dead_at IS NULL)) ORDER BY s.created_at, s.id), '[]')::text"
    " FROM shops s LEFT JOIN tiktok_authorizations a ON a.id = s.authorization_id"
    " WHERE s.creator_id = $1::uuid AND (s.status IN ('paused', 'deauthorized')"
    "  OR (s.status = 'active' AND (a.status <> 'active'"
    "  OR a.refresh_token_expires_at < now() + interval '7 days')))";

static const char rest_wf_defs_sql[] =
    "SELECT coalesce(json_agg(json_build_object('name', d.name, 'version', d.version,"
    " 'builtin', false, 'description', d.definition ->> 'description',"
    " 'created_at', d.created_at) ORDER BY d.name), '[]')::text"
    " FROM (SELECT DISTINCT ON (x.name) x.* FROM workflow_definitions x"
    "  WHERE x.user_id = $1::uuid ORDER BY x.name, x.version DESC) d";

static const char rest_wf_def_sql[] =
    "SELECT d.version, d.definition::text, to_json(d.created_at) #>> '{}', d.created_by"
    " FROM workflow_definitions d WHERE d.user_id = $1::uuid AND d.name = $2"
    " AND ($3::integer IS NULL OR d.version = $3::integer)"
    " ORDER BY d.version DESC LIMIT 1";

/* A new version, if the latest is the one the caller read ($4; null: any). */
static const char rest_wf_def_put_sql[] =
    "WITH cur AS (SELECT coalesce(max(version), 0) AS v FROM workflow_definitions"
    "  WHERE user_id = $1::uuid AND name = $2),"
    " ins AS (INSERT INTO workflow_definitions (user_id, name, version, definition, created_by)"
    "  SELECT $1::uuid, $2, cur.v + 1, $3::jsonb, 'user:' || $1 FROM cur"
    "  WHERE $4::integer IS NULL OR cur.v = $4::integer RETURNING version),"
    " au AS (INSERT INTO audit_log (user_id, actor, action, entity_type, entity_id, after)"
    "  SELECT $1::uuid, 'user:' || $1, 'workflow_definition.stored', 'workflow_definition',"
    "  $2, jsonb_build_object('version', ins.version) FROM ins RETURNING 1)"
    " SELECT (SELECT v FROM cur), (SELECT version FROM ins), (SELECT count(*) FROM au)";

static const char rest_wf_names_sql[] =
    "SELECT DISTINCT name FROM workflow_definitions WHERE user_id = $1::uuid";

static const char rest_wf_rules_sql[] =
    "SELECT version, rules::text, to_json(updated_at) #>> '{}' FROM workflow_rules"
    " WHERE user_id = $1::uuid";

static const char rest_wf_rules_put_sql[] =
    "WITH cur AS (SELECT coalesce((SELECT version FROM workflow_rules"
    "  WHERE user_id = $1::uuid FOR UPDATE), 0) AS v),"
    " up AS (INSERT INTO workflow_rules AS r (user_id, version, rules)"
    "  SELECT $1::uuid, cur.v + 1, $2::jsonb FROM cur"
    "  WHERE $3::integer IS NULL OR cur.v = $3::integer"
    "  ON CONFLICT (user_id) DO UPDATE SET version = r.version + 1, rules = EXCLUDED.rules"
    "  RETURNING r.version),"
    " au AS (INSERT INTO audit_log (user_id, actor, action, entity_type, entity_id, after)"
    "  SELECT $1::uuid, 'user:' || $1, 'workflow_rules.stored', 'workflow_rules', $1,"
    "  jsonb_build_object('version', up.version, 'rules', $2::jsonb) FROM up RETURNING 1)"
    " SELECT (SELECT v FROM cur), (SELECT version FROM up), (SELECT count(*) FROM au)";

/* One request of these endpoints. */
struct rest_wf_call {
	struct rest_call call;		/* first */
	json_t		*doc;		/* PUT: the body */
	long long	if_match;	/* 0: not given */
	long long	version;	/* GET ?version= */
	unsigned	statuses;	/* inbox: bit per enum wf_status */
	bool		status_given;	/* a status parameter was seen: repeats add up */
	long long	limit;
	char		cursor_key[40];	/* inbox cursor: deadline (microseconds) or Infinity */
	char		cursor_id[37];
	bool		has_cursor;
};

static void
rest_wf_free(struct rest_call *rc)
{
	struct rest_wf_call *c = (struct rest_wf_call *)rc;

	json_decref(c->doc);
	free(c);
}

static struct rest_wf_call *
rest_wf_new(void)
{
	struct rest_wf_call *c = xcalloc(1, sizeof(*c));

	c->call.free = rest_wf_free;
	return c;
}

/* Answer with doc (taken). */
static void
rest_wf_json(struct rest_call *c, int status, json_t *doc)
{
	char *text = json_dumps(doc, JSON_COMPACT);

	json_decref(doc);
	rest_reply(c, status, text, strlen(text));
	free(text);
}

/* ---- GET /api/workflows: the needs-attention inbox ------------------------------ */

static const char *
rest_wf_inbox_param(void *arg, const char *k, const char *v)
{
	struct rest_wf_call *c = arg;

	if (strcmp(k, "status") == 0) {
		static const char *const names[] = { "running", "waiting", "paused", "failed",
		    "compensating", "completed", "cancelled", NULL };

		if (!c->status_given)
			c->statuses = 0;
		c->status_given = true;
		if (!rest_enum_list(v, names, &c->statuses))
			return "must be workflow run statuses: running, waiting, paused, failed, "
			    "compensating, completed, cancelled";
	} else if (strcmp(k, "limit") == 0) {
		if ((c->limit = rest_number(v, 200)) < 0)
			return "must be an integer in 1..200";
	} else if (strcmp(k, "cursor") == 0) {
		const char *us = strchr(v, '_');

		if (us == NULL || us - v == 0 || (size_t)(us - v) >= sizeof(c->cursor_key) ||
		    !rest_uuid(us + 1) || (strncmp(v, "Infinity", 8) != 0 &&
		    strspn(v, "0123456789") != (size_t)(us - v)))
			return "is not a cursor of this list";
		snprintf(c->cursor_key, sizeof(c->cursor_key), "%.*s", (int)(us - v), v);
		snprintf(c->cursor_id, sizeof(c->cursor_id), "%s", us + 1);
		c->has_cursor = true;
	} else {
		return "is not a parameter of this endpoint";
	}
	return NULL;
}

/* One inbox row as JSON, with the actions the run takes now. */
static json_t *
rest_wf_inbox_row(PGresult *r, int i)
{
	struct wf_run run;
	char allowed[256];
	json_t *row;

	memset(&run, 0, sizeof(run));
	run.status = wf_status_parse(PQgetvalue(r, i, 5));
	snprintf(run.wait, sizeof(run.wait), "%s", PQgetvalue(r, i, 7));
	run.terminal = PQgetvalue(r, i, 13)[0] == 't';
	wf_step_allowed_json(wf_step_allowed(&run), allowed, sizeof(allowed));
	row = json_pack("{s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:i,s:i,s:i,s:b,s:o}", "workflow_id",
	    PQgetvalue(r, i, 0), "order_id", PQgetvalue(r, i, 1), "tiktok_order_id",
	    PQgetvalue(r, i, 2), "order_number", PQgetvalue(r, i, 3), "workflow_name",
	    PQgetvalue(r, i, 4), "status", PQgetvalue(r, i, 5), "current_step", PQgetvalue(r, i, 6),
	    "error_count", atoi(PQgetvalue(r, i, 11)), "version", atoi(PQgetvalue(r, i, 12)),
	    "attempt", atoi(PQgetvalue(r, i, 14)), "terminal", run.terminal, "allowed_actions",
	    json_loads(allowed, 0, NULL));
	json_object_set_new(row, "wait_kind", PQgetisnull(r, i, 7) ? json_null() :
	    json_string(PQgetvalue(r, i, 7)));
	json_object_set_new(row, "waiting_since", PQgetisnull(r, i, 8) ? json_null() :
	    json_string(PQgetvalue(r, i, 8)));
	json_object_set_new(row, "deadline", PQgetisnull(r, i, 9) ? json_null() :
	    json_string(PQgetvalue(r, i, 9)));
	json_object_set_new(row, "reason", PQgetisnull(r, i, 10) ? (PQgetisnull(r, i, 7) ?
	    json_null() : json_sprintf("waiting for %s", PQgetvalue(r, i, 7))) :
	    json_string(PQgetvalue(r, i, 10)));
	json_object_set_new(row, "updated_at", json_string(PQgetvalue(r, i, 15)));
	json_object_set_new(row, "at_risk", json_boolean(PQgetvalue(r, i, 17)[0] == 't'));
	if (PQgetvalue(r, i, 17)[0] == 't' && PQgetisnull(r, i, 10) && PQgetisnull(r, i, 7))
		json_object_set_new(row, "reason", json_string("TikTok's ship-by time is near: "
		    "not shipped yet"));
	return row;
}

static void
rest_wf_on_inbox(struct pg_batch *b, void *arg)
{
	struct rest_wf_call *c = arg;
	PGresult *r = pg_batch_result(b, 0), *shops;
	json_t *list, *doc;
	int n;

	if (pg_batch_error(b) != NULL || r == NULL || PQnfields(r) != 18) {
		log_warn("workflow inbox failed", "error=%s", log_quote(pg_batch_error(b)));
		rest_db_failed(&c->call, b, "the workflows cannot be read now");
		return;
	}
	list = json_array();
	n = PQntuples(r);
	for (int i = 0; i < n; i++)
		json_array_append_new(list, rest_wf_inbox_row(r, i));
	doc = json_pack("{s:o}", "workflows", list);
	/* The shops come with the first page only. */
	shops = pg_batch_result(b, 1);
	json_object_set_new(doc, "shops", shops != NULL && PQntuples(shops) == 1 ?
	    json_loads(PQgetvalue(shops, 0, 0), 0, NULL) : json_array());
	json_object_set_new(doc, "next_cursor", n == c->limit ? json_sprintf("%s_%s",
	    PQgetvalue(r, n - 1, 16), PQgetvalue(r, n - 1, 0)) : json_null());
	rest_wf_json(&c->call, 200, doc);
}

static void
rest_wf_inbox_run(struct rest_call *rc)
{
	struct rest_wf_call *c = (struct rest_wf_call *)rc;
	struct evbuffer *st = evbuffer_new();
	char limit[16], warn[24];
	struct pg_batch *b;
	bool first = true;

	evbuffer_add(st, "{", 1);
	for (int s = 0; s < WF_STATUS_COUNT; s++)
		if (c->statuses & (1u << s)) {
			evbuffer_add_printf(st, "%s%s", first ? "" : ",", wf_status_name(s));
			first = false;
		}
	evbuffer_add(st, "}", 2);
	snprintf(limit, sizeof(limit), "%lld", c->limit);
	snprintf(warn, sizeof(warn), "%lld", (long long)worker_self()->cfg->shipping.sla_warning);
	b = pg_batch_new(rest_wf_on_inbox, c);
	pg_batch_add(b, true, "rest_wf_inbox", 6, (const char *[]){ rc->creator,
	    (const char *)evbuffer_pullup(st, -1), c->has_cursor ? c->cursor_key : NULL,
	    c->has_cursor ? c->cursor_id : NULL, limit, warn });
	if (!c->has_cursor)
		pg_batch_add(b, true, "rest_wf_inbox_shops", 1, (const char *[]){ rc->creator });
	evbuffer_free(st);
	rest_submit(rc, b);
}

void
rest_workflows_inbox(struct httpd_req *hr)
{
	struct rest_wf_call *c = rest_wf_new();

	c->statuses = 1u << WF_FAILED | 1u << WF_PAUSED | 1u << WF_WAITING;
	c->limit = 50;
	if (!rest_query(hr, rest_wf_inbox_param, c)) {
		rest_free(&c->call);
		return;
	}
	rest_begin(hr, &c->call, rest_wf_inbox_run);
}

/* ---- definitions -------------------------------------------------------------------- */

static void
rest_wf_on_defs(struct pg_batch *b, void *arg)
{
	struct rest_wf_call *c = arg;
	PGresult *r = pg_batch_result(b, 0);
	json_t *list;

	if (pg_batch_error(b) != NULL || r == NULL || PQntuples(r) != 1) {
		rest_db_failed(&c->call, b, "the definitions cannot be read now");
		return;
	}
	list = json_loads(PQgetvalue(r, 0, 0), 0, NULL);
	for (const char *const *n = wf_def_builtin_names(); *n != NULL; n++) {
		json_t *doc = wf_def_builtin(*n)->doc;

		json_array_append_new(list, json_pack("{s:s,s:i,s:b,s:O}", "name", *n, "version", 0,
		    "builtin", 1, "description", json_object_get(doc, "description")));
	}
	rest_wf_json(&c->call, 200, json_pack("{s:o}", "definitions", list));
}

static void
rest_wf_defs_run(struct rest_call *rc)
{
	struct pg_batch *b = pg_batch_new(rest_wf_on_defs, rc);

	pg_batch_add(b, true, "rest_wf_defs", 1, (const char *[]){ rc->creator });
	rest_submit(rc, b);
}

void
rest_workflows_definitions(struct httpd_req *hr)
{
	if (rest_no_query(hr))
		rest_begin(hr, &rest_wf_new()->call, rest_wf_defs_run);
}

static const char *
rest_wf_def_param(void *arg, const char *k, const char *v)
{
	struct rest_wf_call *c = arg;

	if (strcmp(k, "version") != 0)
		return "is not a parameter of this endpoint";
	return (c->version = rest_number(v, 2147483647LL)) < 0 ? "must be a positive integer" : NULL;
}

static void
rest_wf_on_def(struct pg_batch *b, void *arg)
{
	struct rest_wf_call *c = arg;
	PGresult *r = pg_batch_result(b, 0);
	struct wf_def *builtin = wf_def_builtin(c->call.path_id);

	if (pg_batch_error(b) != NULL || r == NULL) {
		rest_db_failed(&c->call, b, "the definition cannot be read now");
	} else if (PQntuples(r) == 1) {
		rest_wf_json(&c->call, 200, json_pack("{s:s,s:i,s:b,s:o,s:s,s:s}", "name",
		    c->call.path_id, "version", atoi(PQgetvalue(r, 0, 0)), "builtin", 0, "definition",
		    json_loads(PQgetvalue(r, 0, 1), 0, NULL), "created_at", PQgetvalue(r, 0, 2),
		    "created_by", PQgetvalue(r, 0, 3)));
	} else if (builtin != NULL && c->version == 0) {
		rest_wf_json(&c->call, 200, json_pack("{s:s,s:i,s:b,s:O}", "name", c->call.path_id,
		    "version", 0, "builtin", 1, "definition", builtin->doc));
	} else {
		rest_error(&c->call, 404, "not_found", "no such workflow definition%s",
		    c->version > 0 ? " version" : "");
	}
}

static void
rest_wf_def_run(struct rest_call *rc)
{
	struct rest_wf_call *c = (struct rest_wf_call *)rc;
	char version[24];
	struct pg_batch *b;

	if (!wf_def_name_ok(rc->path_id)) {
		rest_error(rc, 404, "not_found", "no such workflow definition");
		return;
	}
	snprintf(version, sizeof(version), "%lld", c->version);
	b = pg_batch_new(rest_wf_on_def, c);
	pg_batch_add(b, true, "rest_wf_def", 3, (const char *[]){ rc->creator, rc->path_id,
	    c->version > 0 ? version : NULL });
	rest_submit(rc, b);
}

void
rest_workflows_definition(struct httpd_req *hr)
{
	struct rest_wf_call *c = rest_wf_new();

	if (!rest_query(hr, rest_wf_def_param, c)) {
		rest_free(&c->call);
		return;
	}
	rest_begin(hr, &c->call, rest_wf_def_run);
}

/* 400 naming the path of what is wrong. */
static void
rest_wf_invalid(struct rest_call *c, const char *code, const struct wf_err *err)
{
	rest_error(c, 400, code, "%s: %s", err->path, err->msg);
}

/* The body of a PUT: a JSON object within REST_WF_DOC_MAX; NULL when answered. */
static json_t *
rest_wf_doc(struct rest_call *rc)
{
	json_t *doc = rest_body(rc);
	char *text;

	if (doc == NULL)
		return NULL;
	text = json_dumps(doc, JSON_COMPACT);
	if (text == NULL || strlen(text) > REST_WF_DOC_MAX) {
		rest_error(rc, 413, "payload_too_large", "the document is larger than 64 KiB");
		free(text);
		json_decref(doc);
		return NULL;
	}
	free(text);
	return doc;
}

/* After a PUT: 412 when the version was not the one read, else the new version. */
static void
rest_wf_on_stored(struct pg_batch *b, void *arg)
{
	struct rest_wf_call *c = arg;
	PGresult *r = pg_batch_result(b, 0);

	if (pg_batch_error(b) != NULL || r == NULL || PQntuples(r) != 1) {
		if (strcmp(pg_batch_sqlstate(b), "23505") == 0)
			rest_error(&c->call, 412, "version_mismatch", "stored meanwhile by another "
			    "request; read it again");
		else
			rest_db_failed(&c->call, b, "the document cannot be stored now");
		return;
	}
	if (PQgetisnull(r, 0, 1)) {
		rest_error(&c->call, 412, "version_mismatch", "the current version is %s, not %lld; "
		    "read it again", PQgetvalue(r, 0, 0), c->if_match == REST_IF_NONE ? 0 :
		    c->if_match);
		return;
	}
	wf_forget_creator(c->call.home->set, c->call.creator);
	rest_wf_json(&c->call, 200, c->call.path_id != NULL ?
	    json_pack("{s:b,s:s,s:i}", "success", 1, "name", c->call.path_id, "version",
	    atoi(PQgetvalue(r, 0, 1))) :
	    json_pack("{s:b,s:i}", "success", 1, "version", atoi(PQgetvalue(r, 0, 1))));
}

static void
rest_wf_def_put_run(struct rest_call *rc)
{
	struct rest_wf_call *c = (struct rest_wf_call *)rc;
	struct wf_err err;
	struct wf_def *d;
	char version[24], *text;
	struct pg_batch *b;

	if (!wf_def_name_ok(rc->path_id)) {
		rest_error(rc, 400, "invalid_name", "a workflow name is [a-z][a-z0-9_]*, at most 64 "
		    "bytes");
		return;
	}
	if (wf_def_builtin(rc->path_id) != NULL) {
		/* A run names its workflow; two meanings of one name would be a trap. */
		rest_error(rc, 400, "invalid_name", "%s is a built-in template: store yours under "
		    "another name", rc->path_id);
		return;
	}
	if ((c->if_match = rest_if_match_new(rc)) == -1) {
		rest_error(rc, 400, "invalid_body", "If-Match must be the definition's version");
		return;
	}
	if ((c->doc = rest_wf_doc(rc)) == NULL)
		return;
	if ((d = wf_def_parse(c->doc, rc->path_id, 1, &err)) == NULL) {
		rest_wf_invalid(rc, "invalid_definition", &err);
		return;
	}
	wf_def_unref(d);
	snprintf(version, sizeof(version), "%lld", c->if_match == REST_IF_NONE ? 0 : c->if_match);
	text = json_dumps(c->doc, JSON_COMPACT);
	b = pg_batch_new(rest_wf_on_stored, c);
	pg_batch_add(b, true, "rest_wf_def_put", 4, (const char *[]){ rc->creator, rc->path_id,
	    text, c->if_match != 0 ? version : NULL });
	free(text);
	rest_submit(rc, b);
}

void
rest_workflows_definition_put(struct httpd_req *hr)
{
	if (rest_no_query(hr))
		rest_begin(hr, &rest_wf_new()->call, rest_wf_def_put_run);
}

/* ---- rules -------------------------------------------------------------------------- */

static void
rest_wf_on_rules(struct pg_batch *b, void *arg)
{
	struct rest_wf_call *c = arg;
	PGresult *r = pg_batch_result(b, 0);

	if (pg_batch_error(b) != NULL || r == NULL) {
		rest_db_failed(&c->call, b, "the rules cannot be read now");
	} else if (PQntuples(r) == 0) {
		rest_wf_json(&c->call, 200, json_pack("{s:i,s:{s:[],s:s},s:n}", "version", 0, "rules",
		    "rules", "default", "standard_fulfillment", "updated_at"));
	} else {
		rest_wf_json(&c->call, 200, json_pack("{s:i,s:o,s:s}", "version",
		    atoi(PQgetvalue(r, 0, 0)), "rules", json_loads(PQgetvalue(r, 0, 1), 0, NULL),
		    "updated_at", PQgetvalue(r, 0, 2)));
	}
}

static void
rest_wf_rules_run(struct rest_call *rc)
{
	struct pg_batch *b = pg_batch_new(rest_wf_on_rules, rc);

	pg_batch_add(b, true, "rest_wf_rules", 1, (const char *[]){ rc->creator });
	rest_submit(rc, b);
}

void
rest_workflows_rules(struct httpd_req *hr)
{
	if (rest_no_query(hr))
		rest_begin(hr, &rest_wf_new()->call, rest_wf_rules_run);
}

/* The creator's definition names are known: validate the rules, then store them. */
static void
rest_wf_on_names(struct pg_batch *b, void *arg)
{
	struct rest_wf_call *c = arg;
	PGresult *r = pg_batch_result(b, 0);
	const char **known;
	struct wf_rules *rules;
	struct wf_err err;
	char version[24], *text;
	struct pg_batch *put;

	if (pg_batch_error(b) != NULL || r == NULL) {
		rest_db_failed(&c->call, b, "the rules cannot be stored now");
		return;
	}
	known = xcalloc((size_t)PQntuples(r) + 1, sizeof(char *));
	for (int i = 0; i < PQntuples(r); i++)
		known[i] = PQgetvalue(r, i, 0);
	rules = wf_rules_parse(c->doc, known, &err);
	free(known);
	if (rules == NULL) {
		rest_wf_invalid(&c->call, "invalid_rules", &err);
		return;
	}
	wf_rules_free(rules);
	snprintf(version, sizeof(version), "%lld", c->if_match == REST_IF_NONE ? 0 : c->if_match);
	text = json_dumps(c->doc, JSON_COMPACT);
	put = pg_batch_new(rest_wf_on_stored, c);
	pg_batch_add(put, true, "rest_wf_rules_put", 3, (const char *[]){ c->call.creator, text,
	    c->if_match != 0 ? version : NULL });
	free(text);
	rest_submit(&c->call, put);
}

static void
rest_wf_rules_put_run(struct rest_call *rc)
{
	struct rest_wf_call *c = (struct rest_wf_call *)rc;
	struct pg_batch *b;

	if ((c->if_match = rest_if_match_new(rc)) == -1) {
		rest_error(rc, 400, "invalid_body", "If-Match must be the rules' version");
		return;
	}
	if ((c->doc = rest_wf_doc(rc)) == NULL)
		return;
	b = pg_batch_new(rest_wf_on_names, c);
	pg_batch_add(b, true, "rest_wf_names", 1, (const char *[]){ rc->creator });
	rest_submit(rc, b);
}

void
rest_workflows_rules_put(struct httpd_req *hr)
{
	if (rest_no_query(hr))
		rest_begin(hr, &rest_wf_new()->call, rest_wf_rules_put_run);
}

void
rest_workflows_prepare(struct pg_pool *pg)
{
	pg_pool_prepare(pg, "rest_wf_inbox", rest_wf_inbox_sql);
	pg_pool_prepare(pg, "rest_wf_inbox_shops", rest_wf_inbox_shops_sql);
	pg_pool_prepare(pg, "rest_wf_defs", rest_wf_defs_sql);
	pg_pool_prepare(pg, "rest_wf_def", rest_wf_def_sql);
	pg_pool_prepare(pg, "rest_wf_def_put", rest_wf_def_put_sql);
	pg_pool_prepare(pg, "rest_wf_names", rest_wf_names_sql);
	pg_pool_prepare(pg, "rest_wf_rules", rest_wf_rules_sql);
	pg_pool_prepare(pg, "rest_wf_rules_put", rest_wf_rules_put_sql);
}
