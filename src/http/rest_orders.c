/*
 * rest_orders: GET /api/orders, GET /api/orders/{id}, POST
 * /api/orders/{id}/status and POST /api/orders/{id}/workflow.
 *
 * Reads run on the request's worker; changes run on the order's owner
 * (rest_on_owner), which answers back through the request's worker.
 */
#include "config.h"

#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "orderflow/cache.h"
#include "orderflow/config.h"
#include "orderflow/httpd.h"
#include "orderflow/log.h"
#include "orderflow/order.h"
#include "orderflow/ostore.h"
#include "orderflow/pg.h"
#include "orderflow/rest.h"
#include "orderflow/rest_orders.h"
#include "orderflow/util.h"
#include "orderflow/wf.h"
#include "orderflow/wf_def.h"
#include "orderflow/wf_step.h"
#include "orderflow/worker.h"

/* Sort columns: the name clients send and the cursor's encoding of a value. */
enum rest_orders_sort { REST_SORT_ORDER_DATE, REST_SORT_UPDATED_AT, REST_SORT_TOTAL };
static const char *const rest_orders_sort_names[] = { "order_date", "updated_at", "total_amount", NULL };

/* A list request, parsed and validated. */
struct rest_orders_list {
	long long	page, limit;
	unsigned	status, wf_status;	/* bit i: names[i] asked for */
	bool		has_from, has_to;
	long long	from_us, to_us;	/* to is exclusive */
	char		search[REST_ORDERS_SEARCH_MAX * 4 + 1];
	enum rest_orders_sort	sort;
	bool		asc;
	bool		has_cursor;
	char		cursor_val[48];	/* microseconds or a decimal amount */
	char		cursor_id[37];
};

/* A status change request, validated. */
struct rest_orders_status {
	int		status;		/* enum order_status */
	char		reason[REST_REASON_SIZE];
	bool		has_reason;
	bool		notify, sync;
	long long	version;	/* 0: not given */
};

/* A workflow request, validated. */
struct rest_orders_wf {
	char	name[WF_DEF_NAME_MAX + 1];
	bool	force;
	char	*config;	/* JSON text of an object, or NULL */
};

/* One /api/orders request. */
struct rest_orders_call {
	struct rest_call call;		/* first: the shared part */
	struct rest_orders_list list;	/* GET /api/orders */
	bool		by_uuid;	/* the path's {id} is a UUID */
	bool		cache_fill;	/* GET found no copy and no tombstone: store one */
	char		*tiktok_id;	/* the order's, once known (the owner's key) */
	char		order_uuid[37];	/* the order's UUID, once known */
	int		action;		/* POST .../workflow/actions: enum wf_manual */
	struct rest_orders_status st;	/* POST .../status */
	struct rest_orders_wf wf;	/* POST .../workflow */
};

static void
rest_orders_free(struct rest_call *rc)
{
	struct rest_orders_call *c = (struct rest_orders_call *)rc;

	free(c->tiktok_id);
	free(c->wf.config);
	free(c);
}

static struct rest_orders_call *
rest_orders_new(void)
{
	struct rest_orders_call *c = xcalloc(1, sizeof(*c));

	c->call.free = rest_orders_free;
	return c;
}

/* The cursor: "<sort><a|d>_<value>_<uuid>"; it must match the request's sort. */
static bool
rest_orders_cursor(const char *v, struct rest_orders_list *l)
{
	const char *dot1 = strchr(v, '_'), *dot2 = dot1 ? strchr(dot1 + 1, '_') : NULL;
	size_t vlen;

	if (dot1 == NULL || dot2 == NULL || dot1 - v != 2 || v[0] != "out"[l->sort] ||
	    v[1] != (l->asc ? 'a' : 'd') || !rest_uuid(dot2 + 1))
		return false;
	vlen = (size_t)(dot2 - dot1 - 1);
	if (vlen == 0 || vlen >= sizeof(l->cursor_val))
		return false;
	memcpy(l->cursor_val, dot1 + 1, vlen);
	l->cursor_val[vlen] = '\0';
	for (size_t i = 0; i < vlen; i++) {
		char ch = l->cursor_val[i];

		if (!((ch >= '0' && ch <= '9') || (ch == '-' && i == 0) ||
		    (ch == '.' && l->sort == REST_SORT_TOTAL)))
			return false;
	}
	snprintf(l->cursor_id, sizeof(l->cursor_id), "%s", dot2 + 1);
	return true;
}

/* A list query being read: the cursor waits for the sort it belongs to. */
struct rest_orders_query {
	struct rest_orders_list *l;
	char		cursor[128];	/* "" when none was given */
	bool		page_given;
};

/* One parameter into q->l (rest_param_fn). */
static const char *
rest_orders_list_param(void *arg, const char *k, const char *v)
{
	struct rest_orders_query *q = arg;
	struct rest_orders_list *l = q->l;
	bool day = false;

	if (strcmp(k, "page") == 0)
		return (q->page_given = true, (l->page = rest_number(v, REST_ORDERS_PAGE_MAX)) < 0) ?
		    "must be an integer in 1..100000" : NULL;
	if (strcmp(k, "limit") == 0)
		return (l->limit = rest_number(v, REST_ORDERS_LIMIT_MAX)) < 0 ? "must be an integer in 1..200" : NULL;
	if (strcmp(k, "status") == 0)
		return rest_enum_list(v, order_status_names, &l->status) ? NULL :
		    "must be order statuses: pending, confirmed, processing, shipped, delivered, cancelled, returned";
	if (strcmp(k, "workflow_status") == 0)
		return rest_enum_list(v, order_wf_status_names, &l->wf_status) ? NULL :
		    "must be workflow statuses: new, validated, inventory_reserved, ready_to_ship, shipped, completed, failed, cancelled";
	if (strcmp(k, "date_from") == 0) {
		l->has_from = rest_iso8601(v, &l->from_us, &day);
		return l->has_from ? NULL : "must be an ISO 8601 date or date-time";
	}
	if (strcmp(k, "date_to") == 0) {
		if (!(l->has_to = rest_iso8601(v, &l->to_us, &day)))
			return "must be an ISO 8601 date or date-time";
		/* inclusive: the whole day, or the instant itself */
		l->to_us += day ? 86400000000LL : 1;
		return NULL;
	}
	if (strcmp(k, "search") == 0) {
		size_t n = strlen(v);

		if (n == 0 || n > REST_ORDERS_SEARCH_MAX || !rest_text_ok(v, n))
			return "must be 1..100 characters of UTF-8";
		snprintf(l->search, sizeof(l->search), "%s", v);
		return NULL;
	}
	if (strcmp(k, "sort_by") == 0) {
		int i = rest_index(rest_orders_sort_names, v);

		l->sort = i < 0 ? l->sort : (enum rest_orders_sort)i;
		return i < 0 ? "must be order_date, updated_at or total_amount" : NULL;
	}
	if (strcmp(k, "sort_order") == 0) {
		if (strcmp(v, "asc") != 0 && strcmp(v, "desc") != 0)
			return "must be asc or desc";
		l->asc = strcmp(v, "asc") == 0;
		return NULL;
	}
	if (strcmp(k, "cursor") == 0) {
		if (v[0] == '\0' || strlen(v) >= sizeof(q->cursor))
			return "is not a cursor of this sort order";
		snprintf(q->cursor, sizeof(q->cursor), "%s", v);
		return NULL;
	}
	return "is not a parameter of this endpoint";
}

/* Parse the query of a list request; false when it was answered 400. */
static bool
rest_orders_list_parse(struct httpd_req *hr, struct rest_orders_list *l)
{
	struct rest_orders_query q = { .l = l };
	const char *bad = NULL, *key = "";

	memset(l, 0, sizeof(*l));
	l->page = 1;
	l->limit = 50;
	if (!rest_query(hr, rest_orders_list_param, &q))
		return false;
	if (q.cursor[0] != '\0') {
		key = "cursor";
		bad = q.page_given ? "cannot be combined with page" :
		    !rest_orders_cursor(q.cursor, l) ? "is not a cursor of this sort order" : NULL;
		l->has_cursor = bad == NULL;
	}
	if (bad == NULL && l->has_from && l->has_to && l->from_us >= l->to_us) {
		key = "date_to";
		bad = "must not be before date_from";
	}
	if (bad != NULL)
		httpd_error(hr, 400, "invalid_parameter", "parameter \"%.40s\" %s", key, bad);
	return bad == NULL;
}

/* ---- GET /api/orders ---------------------------------------------------- */

/* A statement being built: its text and its parameters (copied by pg_batch_add). */
struct rest_orders_sql {
	struct evbuffer	*text;
	const char	*params[12];
	char		store[12][48];
	int		n;
};

/* "$k" for a new parameter holding v (kept in q when short). */
static int
rest_orders_param(struct rest_orders_sql *q, const char *v)
{
	if (strlen(v) < sizeof(q->store[0])) {
		snprintf(q->store[q->n], sizeof(q->store[0]), "%s", v);
		v = q->store[q->n];
	}
	q->params[q->n++] = v;
	return q->n;
}

static const char *const rest_orders_sort_cols[] = { "o.order_date", "o.updated_at", "o.total_amount" };

/* The cursor's value of a row's sort column, as SQL text. */
static const char *
rest_orders_sort_key(enum rest_orders_sort s)
{
	return s == REST_SORT_TOTAL ? "o.total_amount::text" : s == REST_SORT_ORDER_DATE ?
	    "(extract(epoch FROM o.order_date) * 1000000)::bigint::text" :
	    "(extract(epoch FROM o.updated_at) * 1000000)::bigint::text";
}

/* The creator, status and workflow_status parameters of a list: $u, $st, $wf (0 = none). */
struct rest_orders_keys {
	int	u, st, wf;
};

static struct rest_orders_keys
rest_orders_key_params(struct rest_orders_sql *q, const struct rest_orders_call *c)
{
	struct rest_orders_keys k = { .u = rest_orders_param(q, c->call.creator) };
	char lit[200];

	if (c->list.status) {
		rest_enum_literal(c->list.status, order_status_names, lit, sizeof(lit));
		k.st = rest_orders_param(q, lit);
	}
	if (c->list.wf_status) {
		rest_enum_literal(c->list.wf_status, order_wf_status_names, lit, sizeof(lit));
		k.wf = rest_orders_param(q, lit);
	}
	return k;
}

/* " FROM table o WHERE" the creator, status and workflow_status predicates. */
static void
rest_orders_key_where(struct rest_orders_sql *q, const char *table, struct rest_orders_keys k)
{
	evbuffer_add_printf(q->text, " FROM %s o WHERE o.user_id = $%d::uuid", table, k.u);
	if (k.st)
		evbuffer_add_printf(q->text, " AND o.order_status = ANY ($%d::order_status[])", k.st);
	if (k.wf)
		evbuffer_add_printf(q->text, " AND o.workflow_status = ANY ($%d::workflow_status[])", k.wf);
}

/* WHERE of the filtered set (the cursor only when with_cursor). */
static void
rest_orders_where(struct rest_orders_sql *q, struct rest_orders_call *c, bool with_cursor)
{
	const struct rest_orders_list *l = &c->list;
	char num[24];

	rest_orders_key_where(q, "orders", rest_orders_key_params(q, c));
	if (l->has_from) {
		snprintf(num, sizeof(num), "%lld", l->from_us);
		evbuffer_add_printf(q->text, " AND o.order_date >= 'epoch'::timestamptz +"
		    " $%d::bigint * interval '1 microsecond'", rest_orders_param(q, num));
	}
	if (l->has_to) {
		snprintf(num, sizeof(num), "%lld", l->to_us);
		evbuffer_add_printf(q->text, " AND o.order_date < 'epoch'::timestamptz +"
		    " $%d::bigint * interval '1 microsecond'", rest_orders_param(q, num));
	}
	if (l->search[0] != '\0') {
		/* Prefix ranges the text_pattern_ops indexes can scan. */
		int k = rest_orders_param(q, l->search);

		evbuffer_add_printf(q->text, " AND (");
		for (int i = 0; i < 4; i++) {
			static const char *const cols[] = { "order_number", "tiktok_order_id",
				"customer_name", "customer_email" };

			evbuffer_add_printf(q->text, "%s(lower(o.%s) ~>=~ lower($%d) AND lower(o.%s) ~<~"
			    " (lower($%d) || chr(1114111)))", i ? " OR " : "", cols[i], k, cols[i], k);
		}
		evbuffer_add_printf(q->text, ")");
	}
	if (with_cursor && l->has_cursor) {
		int v = rest_orders_param(q, l->cursor_val), id = rest_orders_param(q, l->cursor_id);
		char val[96];

		if (l->sort == REST_SORT_TOTAL)
			snprintf(val, sizeof(val), "$%d::numeric", v);
		else
			snprintf(val, sizeof(val),
			    "'epoch'::timestamptz + $%d::bigint * interval '1 microsecond'", v);
		evbuffer_add_printf(q->text, " AND (%s, o.id) %s (%s, $%d::uuid)",
		    rest_orders_sort_cols[l->sort], l->asc ? ">" : "<", val, id);
	}
}

#define REST_DAY_US 86400000000LL

static long long
rest_orders_floor_div(long long a, long long b)
{
	return a / b - (a % b != 0 && (a < 0) != (b < 0));
}

/* "$k" for a new parameter holding the number v. */
static int
rest_orders_ll_param(struct rest_orders_sql *q, long long v)
{
	char num[24];

	snprintf(num, sizeof(num), "%lld", v);
	return rest_orders_param(q, num);
}

/* The orders of [from_us, to_us): what order_stats cannot split (part of a day). */
static void
rest_orders_summary_edge(struct rest_orders_sql *q, struct rest_orders_keys k, long long from_us, long long to_us,
    bool first)
{
	int a = rest_orders_ll_param(q, from_us), b = rest_orders_ll_param(q, to_us);

	evbuffer_add_printf(q->text, "%sSELECT o.order_status, 1 AS n, o.total_amount AS s",
	    first ? "" : " UNION ALL ");
	rest_orders_key_where(q, "orders", k);
	evbuffer_add_printf(q->text, " AND o.order_date >= 'epoch'::timestamptz + $%d::bigint * interval"
	    " '1 microsecond' AND o.order_date < 'epoch'::timestamptz + $%d::bigint * interval"
	    " '1 microsecond'", a, b);
}

/*
 * The summary's groups (order_status, n, s) from order_stats and the deltas
 * not yet folded into it (sql/006_order_stats.sql) for the whole UTC days
 * of the date range, plus the orders themselves for the parts of days at
 * either end.  Exact in one snapshot, and a few hundred rows for a creator
 * with 200,000 orders instead of all of them.
 */
static void
rest_orders_summary_stats(struct rest_orders_sql *q, struct rest_orders_call *c)
{
	const struct rest_orders_list *l = &c->list;
	struct rest_orders_keys k = rest_orders_key_params(q, c);
	long long lo = 0, hi = 0;	/* the whole days [lo, hi), days since 1970-01-01 */
	int lo_k = 0, hi_k = 0;

	if (l->has_from)
		lo = -rest_orders_floor_div(-l->from_us, REST_DAY_US);
	if (l->has_to)
		hi = rest_orders_floor_div(l->to_us, REST_DAY_US);
	evbuffer_add_printf(q->text, "SELECT x.order_status, sum(x.n)::bigint AS n, sum(x.s) AS s FROM (");
	if (l->has_from && l->has_to && lo >= hi) {
		/* less than two days: no whole day to read from order_stats */
		rest_orders_summary_edge(q, k, l->from_us, l->to_us, true);
		evbuffer_add_printf(q->text, ") x GROUP BY x.order_status");
		return;
	}
	if (l->has_from)
		lo_k = rest_orders_ll_param(q, lo);
	if (l->has_to)
		hi_k = rest_orders_ll_param(q, hi);
	for (int i = 0; i < 2; i++) {
		evbuffer_add_printf(q->text, "%sSELECT o.order_status, o.orders AS n, o.amount AS s",
		    i ? " UNION ALL " : "");
		rest_orders_key_where(q, i ? "order_stats_delta" : "order_stats", k);
		if (lo_k)
			evbuffer_add_printf(q->text, " AND o.day >= DATE '1970-01-01' + $%d::integer", lo_k);
		if (hi_k)
			evbuffer_add_printf(q->text, " AND o.day < DATE '1970-01-01' + $%d::integer", hi_k);
	}
	if (l->has_from && lo * REST_DAY_US != l->from_us)
		rest_orders_summary_edge(q, k, l->from_us, lo * REST_DAY_US, false);
	if (l->has_to && hi * REST_DAY_US != l->to_us)
		rest_orders_summary_edge(q, k, hi * REST_DAY_US, l->to_us, false);
	evbuffer_add_printf(q->text, ") x GROUP BY x.order_status");
}

/* Add the page statement and the summary statement of c to b. */
static void
rest_orders_list_statements(struct pg_batch *b, struct rest_orders_call *c)
{
	const struct rest_orders_list *l = &c->list;
	struct rest_orders_sql q = { .n = 0 };
	const char *dir = l->asc ? "ASC" : "DESC";
	char num[24];

	q.text = evbuffer_new();
	/* One row per order: the JSON array is joined in rest_orders_on_list, cheaper than json_agg. */
	evbuffer_add_printf(q.text, "SELECT row_to_json(o)::text, %s, o.id::text",
	    rest_orders_sort_key(l->sort));
	rest_orders_where(&q, c, true);
	snprintf(num, sizeof(num), "%lld", l->limit);
	evbuffer_add_printf(q.text, " ORDER BY %s %s, o.id %s LIMIT $%d::integer",
	    rest_orders_sort_cols[l->sort], dir, dir, rest_orders_param(&q, num));
	if (!l->has_cursor && l->page > 1) {
		snprintf(num, sizeof(num), "%lld", (l->page - 1) * l->limit);
		evbuffer_add_printf(q.text, " OFFSET $%d::bigint", rest_orders_param(&q, num));
	}
	evbuffer_add(q.text, "", 1);
	pg_batch_add(b, false, (const char *)evbuffer_pullup(q.text, -1), q.n, q.params);
	evbuffer_free(q.text);

	/* The summary is over the whole filtered set, whatever the page. */
	q.n = 0;
	q.text = evbuffer_new();
	evbuffer_add_printf(q.text, "SELECT coalesce(sum(g.n), 0)::bigint, coalesce(sum(g.s), 0)::text,"
	    " json_object_agg(st, coalesce(g.n, 0) ORDER BY st)::text"
	    " FROM unnest(enum_range(NULL::order_status)) st LEFT JOIN (");
	if (l->search[0] == '\0') {
		rest_orders_summary_stats(&q, c);
	} else {
		/* a search matches few rows, through its own indexes */
		evbuffer_add_printf(q.text, "SELECT o.order_status, count(*) AS n, sum(o.total_amount) AS s");
		rest_orders_where(&q, c, false);
		evbuffer_add_printf(q.text, " GROUP BY o.order_status");
	}
	evbuffer_add_printf(q.text, ") g ON g.order_status = st");
	evbuffer_add(q.text, "", 1);
	pg_batch_add(b, false, (const char *)evbuffer_pullup(q.text, -1), q.n, q.params);
	evbuffer_free(q.text);
}

static void
rest_orders_on_list(struct pg_batch *b, void *arg)
{
	struct rest_orders_call *c = arg;
	const struct rest_orders_list *l = &c->list;
	PGresult *page = pg_batch_result(b, 0), *sum = pg_batch_result(b, 1);
	struct evbuffer *out;
	long long total, rows;

	if (pg_batch_error(b) != NULL || page == NULL || sum == NULL || PQnfields(page) != 3 ||
	    PQntuples(page) > l->limit || PQntuples(sum) != 1) {
		log_warn("order list failed", "error=%s", log_quote(pg_batch_error(b)));
		rest_db_failed(&c->call, b, "the orders cannot be read now");
		return;
	}
	rows = PQntuples(page);
	total = strtoll(PQgetvalue(sum, 0, 0), NULL, 10);
	out = evbuffer_new();
	evbuffer_add(out, "{\"orders\":[", 11);
	for (int i = 0; i < rows; i++) {
		if (i > 0)
			evbuffer_add(out, ",", 1);
		evbuffer_add(out, PQgetvalue(page, i, 0), (size_t)PQgetlength(page, i, 0));
	}
	evbuffer_add_printf(out, "],\"pagination\":{\"page\":%lld,\"limit\":%lld,"
	    "\"total\":%lld,\"total_pages\":%lld},\"summary\":{\"total_orders\":%lld,"
	    "\"total_amount\":%s,\"status_breakdown\":%s},\"next_cursor\":",
	    l->has_cursor ? 0 : l->page, l->limit, total,
	    (total + l->limit - 1) / l->limit, total, PQgetvalue(sum, 0, 1), PQgetvalue(sum, 0, 2));
	if (rows == l->limit && !PQgetisnull(page, rows - 1, 1))
		evbuffer_add_printf(out, "\"%c%c_%s_%s\"}", "out"[l->sort], l->asc ? 'a' : 'd',
		    PQgetvalue(page, rows - 1, 1), PQgetvalue(page, rows - 1, 2));
	else
		evbuffer_add_printf(out, "null}");
	rest_reply(&c->call, 200, (const char *)evbuffer_pullup(out, -1), evbuffer_get_length(out));
	evbuffer_free(out);
}

static void
rest_orders_list_run(struct rest_call *rc)
{
	struct rest_orders_call *c = (struct rest_orders_call *)rc;
	struct pg_batch *b = pg_batch_new(rest_orders_on_list, c);

	rest_orders_list_statements(b, c);
	rest_submit(rc, b);
}

void
rest_orders_list(struct httpd_req *hr)
{
	struct rest_orders_call *c = rest_orders_new();

	if (!rest_orders_list_parse(hr, &c->list)) {
		rest_free(&c->call);
		return;
	}
	rest_begin(hr, &c->call, rest_orders_list_run);
}


/* ---- GET /api/orders/{id} ------------------------------------------------ */

/*
 * The order with its items, workflow and history: one document from
 * PostgreSQL.  Built from json text rather than jsonb: jsonb would parse,
 * sort and re-print every nested value, about five times the CPU of the
 * whole statement.  row_to_json(o) always ends in '}', so the order's
 * object is reopened there.
 */
static const char rest_orders_detail_sql[] =
    "SELECT '{\"order\":' || left(row_to_json(o)::text, -1)"
    " || ',\"items\":' || coalesce((SELECT json_agg(i ORDER BY i.sku_id, i.id)"
    "  FROM order_items i WHERE i.order_id = o.id)::text, '[]')"
    " || ',\"workflow\":' || coalesce((SELECT (to_jsonb(w) - 'lease_owner' - 'lease_until')::text"
    "  FROM order_workflows w WHERE w.order_id = o.id ORDER BY w.created_at DESC, w.id DESC LIMIT 1), 'null')"
    " || ',\"status_history\":' || coalesce((SELECT json_agg(h ORDER BY h.created_at DESC, h.id DESC)"
    "  FROM order_status_history h WHERE h.order_id = o.id)::text, '[]')"
    " || ',\"shipping_info\":' || json_build_object('address', o.shipping_address,"
    "  'method', o.shipping_method, 'cost', o.shipping_cost,"
    "  'expected_ship_date', o.expected_ship_date, 'shipped_date', o.shipped_date,"
    "  'delivered_date', o.delivered_date, 'shipping_type', coalesce(o.shipping_type, 'TIKTOK'),"
    "  'delivery_option_id', o.delivery_option_id, 'rts_sla_time', o.rts_sla_time,"
    "  'carrier', sh.carrier, 'service', sh.service, 'label_cost', sh.cost,"
    "  'label_currency', sh.currency, 'label_url', sh.label_url,"
    "  'packages', coalesce(sh.packages, '[]'))::text"
    " || ',\"tracking_info\":' || CASE WHEN sh.tracking_number IS NULL THEN 'null' ELSE"
    "  json_build_object('tracking_number', sh.tracking_number, 'carrier', sh.carrier,"
    "  'status', sh.tracking_status, 'delivered_at', sh.delivered_at,"
    "  'events', sh.events)::text END || '}}'"
    " FROM orders o LEFT JOIN LATERAL (SELECT (array_agg(s.carrier ORDER BY s.created_at) FILTER (WHERE s.state <> 'voided'))[1] AS carrier,"
    "  (array_agg(s.service ORDER BY s.created_at) FILTER (WHERE s.state <> 'voided'))[1] AS service, sum(s.cost) FILTER (WHERE s.state <> 'voided') AS cost,"
    "  (array_agg(s.currency ORDER BY s.created_at) FILTER (WHERE s.state <> 'voided'))[1] AS currency,"
    "  (array_agg(s.label_url ORDER BY s.created_at) FILTER (WHERE s.state <> 'voided'))[1] AS label_url,"
    "  (array_agg(s.tracking_number ORDER BY s.created_at) FILTER (WHERE s.state <> 'voided'))[1] AS tracking_number,"
    "  (array_agg(s.tracking_status ORDER BY s.created_at) FILTER (WHERE s.state <> 'voided'))[1] AS tracking_status,"
    "  max(s.delivered_at) FILTER (WHERE s.state <> 'voided') AS delivered_at,"
    "  (array_agg(s.tracking_events ORDER BY s.created_at) FILTER (WHERE s.state <> 'voided'))[1] AS events,"
    "  json_agg(json_build_object('package_id', s.tiktok_package_id, 'state', s.state,"
    "  'shipping_type', s.shipping_type, 'carrier', s.carrier, 'service', s.service,"
    "  'cost', s.cost, 'currency', s.currency, 'tracking_number', s.tracking_number,"
    "  'label_url', s.label_url, 'shipping_provider_id', s.shipping_provider_id,"
    "  'handover_method', s.handover_method, 'tracking_status', s.tracking_status,"
    "  'tracking_events', s.tracking_events, 'refund_status', s.refund_status,"
    "  'purchased_at', s.purchased_at, 'shipped_at', s.shipped_at,"
    "  'delivered_at', s.delivered_at, 'voided_at', s.voided_at) ORDER BY s.created_at)"
    "  AS packages FROM shipments s WHERE s.order_id = o.id) sh ON true"
    " WHERE o.user_id = $1::uuid AND ";

static void
rest_orders_on_detail(struct pg_batch *b, void *arg)
{
	struct rest_orders_call *c = arg;
	PGresult *r = pg_batch_result(b, 0);

	if (pg_batch_error(b) != NULL || r == NULL) {
		log_warn("order read failed", "error=%s", log_quote(pg_batch_error(b)));
		rest_db_failed(&c->call, b, "the order cannot be read now");
		return;
	}
	if (PQntuples(r) == 0) {
		rest_error(&c->call, 404, "not_found", "no such order");
		return;
	}
	if (c->cache_fill)
		cache_put(worker_self(), c->call.creator, c->call.path_id, PQgetvalue(r, 0, 0),
		    (size_t)PQgetlength(r, 0, 0));
	rest_reply(&c->call, 200, PQgetvalue(r, 0, 0), (size_t)PQgetlength(r, 0, 0));
}

static void
rest_orders_on_cached(const char *body, size_t len, bool fill, void *arg)
{
	struct rest_orders_call *c = arg;
	struct pg_batch *b;

	if (body != NULL) {
		rest_reply(&c->call, 200, body, len);
		return;
	}
	c->cache_fill = fill;
	b = pg_batch_new(rest_orders_on_detail, c);
	pg_batch_add(b, true, c->by_uuid ? "rest_orders_by_id" : "rest_orders_by_tiktok_id", 2,
	    (const char *[]){ c->call.creator, c->call.path_id });
	rest_submit(&c->call, b);
}

static void
rest_orders_get_run(struct rest_call *rc)
{
	cache_get(rc->home, rc->creator, rc->path_id, rest_orders_on_cached, rc);
}

/* An /api/orders/{id}... request: check the id, then authenticate and run. */
static void
rest_orders_begin_one(struct httpd_req *hr, rest_fn *run)
{
	struct rest_orders_call *c;
	bool by_uuid;

	if (!rest_order_id(hr, &by_uuid))
		return;
	c = rest_orders_new();
	c->by_uuid = by_uuid;
	rest_begin(hr, &c->call, run);
}

void
rest_orders_get(struct httpd_req *hr)
{
	if (rest_no_query(hr))
		rest_orders_begin_one(hr, rest_orders_get_run);
}

/* ---- the order's owner --------------------------------------------------- */

static const char rest_orders_tiktok_id_sql[] =
    "SELECT tiktok_order_id FROM orders WHERE user_id = $1::uuid AND id = $2::uuid";

static void
rest_orders_on_tiktok_id(struct pg_batch *b, void *arg)
{
	struct rest_orders_call *c = arg;
	PGresult *r = pg_batch_result(b, 0);

	if (pg_batch_error(b) != NULL || r == NULL) {
		rest_db_failed(&c->call, b, "the order cannot be read now");
		return;
	}
	if (PQntuples(r) == 0) {
		rest_error(&c->call, 404, "not_found", "no such order");
		return;
	}
	c->tiktok_id = xstrdup(PQgetvalue(r, 0, 0));
	rest_on_owner(&c->call, c->tiktok_id, c->call.run);
}

/*
 * Run fn on the owner of the request's order: its TikTok id is the path's
 * {id}, or is looked up first when the path names the UUID (404 if the
 * caller has no such order).
 */
static void
rest_orders_to_owner(struct rest_orders_call *c, rest_fn *fn)
{
	struct pg_batch *b;

	if (!c->by_uuid) {
		c->tiktok_id = xstrdup(c->call.path_id);
		rest_on_owner(&c->call, c->tiktok_id, fn);
		return;
	}
	c->call.run = fn;
	b = pg_batch_new(rest_orders_on_tiktok_id, c);
	pg_batch_add(b, true, "rest_orders_tiktok_id", 2,
	    (const char *[]){ c->call.creator, c->call.path_id });
	rest_submit(&c->call, b);
}

/* ---- POST /api/orders/{id}/status -------------------------------------- */

/* Fields of the status body into s; NULL or the message of a 400. */
static const char *
rest_orders_status_fields(json_t *doc, struct rest_orders_status *s)
{
	const char *k;
	json_t *v;

	s->status = -1;
	json_object_foreach(doc, k, v) {
		if (strcmp(k, "status") == 0) {
			if (!json_is_string(v) || (s->status = order_status_parse(json_string_value(v))) < 0)
				return "\"status\" must be an order status";
		} else if (strcmp(k, "reason") == 0) {
			if (!rest_reason(v, s->reason, &s->has_reason))
				return "\"reason\" must be text of at most 255 characters";
		} else if (strcmp(k, "notify_customer") == 0 || strcmp(k, "sync_to_tiktok") == 0) {
			if (!json_is_boolean(v))
				return k[0] == 'n' ? "\"notify_customer\" must be true or false" :
				    "\"sync_to_tiktok\" must be true or false";
			*(k[0] == 'n' ? &s->notify : &s->sync) = json_is_true(v);
		} else if (strcmp(k, "version") == 0) {
			if (!json_is_integer(v) || json_integer_value(v) < 1 ||
			    json_integer_value(v) > 2147483647)
				return "\"version\" must be a positive integer";
			s->version = json_integer_value(v);
		} else {
			return rest_unknown_field(k);
		}
	}
	return s->status < 0 ? "\"status\" is required" : NULL;
}

static void
rest_orders_on_status(const char *error, PGresult *r, void *arg)
{
	struct rest_orders_call *c = arg;
	const char *verdict;
	struct evbuffer *out;

	if (error != NULL || PQntuples(r) != 1) {
		rest_unavailable(&c->call, "the order cannot be changed now");
		return;
	}
	verdict = PQgetvalue(r, 0, OSTORE_VERDICT);
	if (strcmp(verdict, "not_found") == 0) {
		rest_error(&c->call, 404, "not_found", "no such order");
	} else if (strcmp(verdict, "stale") == 0) {
		rest_error(&c->call, 412, "version_mismatch", "the order is at version %s, not %lld; "
		    "read it again", PQgetvalue(r, 0, OSTORE_VERSION), c->st.version);
	} else if (strcmp(verdict, "illegal") == 0) {
		rest_error(&c->call, 409, "invalid_transition", "an order that is %s cannot become %s; "
		    "allowed next statuses: %s", PQgetvalue(r, 0, OSTORE_PREV),
		    order_status_name(c->st.status), PQgetvalue(r, 0, OSTORE_ALLOWED));
	} else {
		out = evbuffer_new();
		evbuffer_add_printf(out, "{\"success\":true,\"order\":%s,\"queued_actions\":%s}",
		    PQgetvalue(r, 0, OSTORE_ORDER), PQgetvalue(r, 0, OSTORE_ACTIONS));
		rest_reply(&c->call, 200, (const char *)evbuffer_pullup(out, -1),
		    evbuffer_get_length(out));
		evbuffer_free(out);
	}
}

/* On the owner: the change itself. */
static void
rest_orders_status_owner(struct rest_call *rc)
{
	struct rest_orders_call *c = (struct rest_orders_call *)rc;
	json_t *meta = json_pack("{s:b,s:b}", "notify_customer", c->st.notify,
	    "sync_to_tiktok", c->st.sync);
	char actor[64];
	struct ostore_item it = {
		.n = 1, .key = rc->path_id, .creator = rc->creator, .status = c->st.status,
		.version = c->st.version, .reason = c->st.has_reason ? c->st.reason : NULL,
		.source = ORDER_SOURCE_USER, .actor = actor, .changed_by = rc->creator,
		.meta = meta, .notify = c->st.notify, .sync = c->st.sync,
	};
	bool sent;

	snprintf(actor, sizeof(actor), "user:%s", rc->creator);
	sent = ostore_set_status(worker_self(), &it, 1, true, rest_orders_on_status, c);
	json_decref(meta);
	if (!sent)
		rest_unavailable(rc, "database unavailable");
}

static void
rest_orders_status_run(struct rest_call *rc)
{
	struct rest_orders_call *c = (struct rest_orders_call *)rc;
	long long if_match = rest_if_match(rc);
	json_t *doc = rest_body(rc);
	const char *bad;

	if (doc == NULL)
		return;
	bad = rest_orders_status_fields(doc, &c->st);
	json_decref(doc);
	if (bad == NULL && if_match < 0)
		bad = "If-Match must be the order's version";
	else if (bad == NULL && if_match > 0 && c->st.version > 0 && if_match != c->st.version)
		bad = "If-Match and \"version\" differ";
	if (bad != NULL) {
		rest_error(rc, 400, "invalid_body", "%s", bad);
		return;
	}
	if (c->st.version == 0)
		c->st.version = if_match;
	rest_orders_to_owner(c, rest_orders_status_owner);
}

void
rest_orders_status(struct httpd_req *hr)
{
	rest_orders_begin_one(hr, rest_orders_status_run);
}
/* ---- the live workflow: POST .../workflow, POST .../workflow/actions ------ */

/* The order's UUID and TikTok id, and whether its creator has a definition of a name. */
static const char rest_orders_resolve_sql[] =
    "SELECT o.id::text, o.tiktok_order_id, EXISTS (SELECT 1 FROM workflow_definitions d"
    "  WHERE d.user_id = o.user_id AND d.name = $3)"
    " FROM orders o WHERE o.user_id = $1::uuid AND %s";

/* Largest workflow config accepted, serialized. */
#define REST_ORDERS_WF_CONFIG_MAX 16384

static const char *
rest_orders_wf_fields(json_t *doc, struct rest_orders_wf *wf)
{
	const char *k;
	json_t *v;

	json_object_foreach(doc, k, v) {
		if (strcmp(k, "workflow_name") == 0) {
			if (!json_is_string(v) || !wf_def_name_ok(json_string_value(v)))
				return "\"workflow_name\" must be a workflow name ([a-z][a-z0-9_]*, "
				    "at most 64 bytes)";
			snprintf(wf->name, sizeof(wf->name), "%s", json_string_value(v));
		} else if (strcmp(k, "force_restart") == 0) {
			if (!json_is_boolean(v))
				return "\"force_restart\" must be true or false";
			wf->force = json_is_true(v);
		} else if (strcmp(k, "config") == 0) {
			if (json_is_null(v))
				continue;
			if (!json_is_object(v))
				return "\"config\" must be an object";
			free(wf->config);
			wf->config = json_dumps(v, JSON_COMPACT);
			if (wf->config == NULL || strlen(wf->config) > REST_ORDERS_WF_CONFIG_MAX)
				return "\"config\" is too large (16 KiB at most)";
		} else {
			return rest_unknown_field(k);
		}
	}
	return wf->name[0] == '\0' ? "\"workflow_name\" is required" : NULL;
}

/* The engine's answer, sent from the owner (rest hands it to the request's worker). */
static void
rest_orders_on_engine(const struct wf_answer *a, void *arg)
{
	struct rest_orders_call *c = arg;
	char *text;

	if (a->status != 200) {
		if (a->status == 503)
			rest_unavailable(&c->call, a->message);
		else
			rest_error(&c->call, a->status, a->code, "%s", a->message);
		return;
	}
	text = json_dumps(a->doc, JSON_COMPACT);
	rest_reply(&c->call, 200, text, strlen(text));
	free(text);
}

/* On the owner. */
static void
rest_orders_workflow_owner(struct rest_call *rc)
{
	struct rest_orders_call *c = (struct rest_orders_call *)rc;

	wf_request(worker_self(), rc->creator, c->order_uuid, c->tiktok_id, c->wf.name,
	    c->wf.config, c->wf.force, rest_orders_on_engine, c);
}

static void
rest_orders_action_owner(struct rest_call *rc)
{
	struct rest_orders_call *c = (struct rest_orders_call *)rc;

	wf_act(worker_self(), rc->creator, c->order_uuid, c->tiktok_id, c->action, c->st.version,
	    c->st.has_reason ? c->st.reason : NULL, rest_orders_on_engine, c);
}

static void
rest_orders_on_resolved(struct pg_batch *b, void *arg)
{
	struct rest_orders_call *c = arg;
	PGresult *r = pg_batch_result(b, 0);

	if (pg_batch_error(b) != NULL || r == NULL || PQnfields(r) != 3) {
		rest_db_failed(&c->call, b, "the order cannot be read now");
		return;
	}
	if (PQntuples(r) == 0) {
		rest_error(&c->call, 404, "not_found", "no such order");
		return;
	}
	if (c->wf.name[0] != '\0' && PQgetvalue(r, 0, 2)[0] != 't' &&
	    wf_def_builtin(c->wf.name) == NULL) {
		rest_error(&c->call, 400, "unknown_workflow", "no workflow is named %s: use a "
		    "built-in template (standard_fulfillment, manual_review, digital) or one of "
		    "your definitions", c->wf.name);
		return;
	}
	snprintf(c->order_uuid, sizeof(c->order_uuid), "%s", PQgetvalue(r, 0, 0));
	c->tiktok_id = xstrdup(PQgetvalue(r, 0, 1));
	rest_on_owner(&c->call, c->tiktok_id, c->call.run);
}

/* Both ids of the request's order (and the workflow name's check), then fn on its owner. */
static void
rest_orders_resolve(struct rest_orders_call *c, rest_fn *fn)
{
	struct pg_batch *b = pg_batch_new(rest_orders_on_resolved, c);

	c->call.run = fn;
	pg_batch_add(b, true, c->by_uuid ? "rest_orders_resolve_by_id" :
	    "rest_orders_resolve_by_tiktok_id", 3, (const char *[]){ c->call.creator,
	    c->call.path_id, c->wf.name });
	rest_submit(&c->call, b);
}

static void
rest_orders_workflow_run(struct rest_call *rc)
{
	struct rest_orders_call *c = (struct rest_orders_call *)rc;
	json_t *doc = rest_body(rc);
	const char *bad;

	if (doc == NULL)
		return;
	bad = rest_orders_wf_fields(doc, &c->wf);
	json_decref(doc);
	if (bad != NULL) {
		rest_error(rc, 400, "invalid_body", "%s", bad);
		return;
	}
	rest_orders_resolve(c, rest_orders_workflow_owner);
}

void
rest_orders_workflow(struct httpd_req *hr)
{
	rest_orders_begin_one(hr, rest_orders_workflow_run);
}

static const char *
rest_orders_action_fields(json_t *doc, struct rest_orders_call *c)
{
	const char *k;
	json_t *v;

	c->action = -1;
	json_object_foreach(doc, k, v) {
		if (strcmp(k, "action") == 0) {
			if (!json_is_string(v) || (c->action = wf_manual_parse(json_string_value(v))) < 0)
				return "\"action\" must be retry, skip, cancel, pause, resume, approve or "
				    "reject";
		} else if (strcmp(k, "reason") == 0) {
			if (!rest_reason(v, c->st.reason, &c->st.has_reason))
				return "\"reason\" must be text of at most 255 characters";
		} else {
			return rest_unknown_field(k);
		}
	}
	return c->action < 0 ? "\"action\" is required" : NULL;
}

static void
rest_orders_action_run(struct rest_call *rc)
{
	struct rest_orders_call *c = (struct rest_orders_call *)rc;
	long long if_match = rest_if_match(rc);
	json_t *doc = rest_body(rc);
	const char *bad;

	if (doc == NULL)
		return;
	bad = rest_orders_action_fields(doc, c);
	json_decref(doc);
	if (bad == NULL && if_match < 0)
		bad = "If-Match must be the workflow's version";
	if (bad != NULL) {
		rest_error(rc, 400, "invalid_body", "%s", bad);
		return;
	}
	c->st.version = if_match;
	rest_orders_resolve(c, rest_orders_action_owner);
}

void
rest_orders_workflow_action(struct httpd_req *hr)
{
	rest_orders_begin_one(hr, rest_orders_action_run);
}

/* Prepare tmpl with its one "%s" replaced by the order lookup by UUID or TikTok id. */
static void
rest_orders_prepare_one(struct pg_pool *pg, const char *name, const char *tmpl, bool by_uuid)
{
	const char *at = strstr(tmpl, "%s");
	char sql[4096];

	snprintf(sql, sizeof(sql), "%.*s%s%s", (int)(at - tmpl), tmpl,
	    by_uuid ? "id = $2::uuid" : "tiktok_order_id = $2", at + 2);
	pg_pool_prepare(pg, name, sql);
}

void
rest_orders_prepare(struct pg_pool *pg)
{
	char sql[sizeof(rest_orders_detail_sql) + 64];

	snprintf(sql, sizeof(sql), "%so.id = $2::uuid", rest_orders_detail_sql);
	pg_pool_prepare(pg, "rest_orders_by_id", sql);
	snprintf(sql, sizeof(sql), "%so.tiktok_order_id = $2", rest_orders_detail_sql);
	pg_pool_prepare(pg, "rest_orders_by_tiktok_id", sql);
	pg_pool_prepare(pg, "rest_orders_tiktok_id", rest_orders_tiktok_id_sql);
	rest_orders_prepare_one(pg, "rest_orders_resolve_by_id", rest_orders_resolve_sql, true);
	rest_orders_prepare_one(pg, "rest_orders_resolve_by_tiktok_id", rest_orders_resolve_sql,
	    false);
}
