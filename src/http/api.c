/*
 * api: GET /api/orders and GET /api/orders/{id}.
 */
#include "config.h"

#include <ctype.h>
#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <hiredis/hiredis.h>
#include <jansson.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "orderflow/api.h"
#include "orderflow/auth.h"
#include "orderflow/config.h"
#include "orderflow/httpd.h"
#include "orderflow/log.h"
#include "orderflow/pg.h"
#include "orderflow/ratelimit.h"
#include "orderflow/rds.h"
#include "orderflow/util.h"
#include "orderflow/worker.h"

static const char *const api_order_statuses[] = {
	"pending", "confirmed", "processing", "shipped", "delivered", "cancelled", "returned", NULL
};
static const char *const api_workflow_statuses[] = {
	"new", "validated", "inventory_reserved", "ready_to_ship", "shipped", "completed",
	"failed", NULL
};

/* Sort columns: the name clients send and the cursor's encoding of a value. */
enum api_sort { API_SORT_ORDER_DATE, API_SORT_UPDATED_AT, API_SORT_TOTAL };
static const char *const api_sort_names[] = { "order_date", "updated_at", "total_amount", NULL };

/* A list request, parsed and validated. */
struct api_list {
	long long	page, limit;
	unsigned	status, wf_status;	/* bit i: names[i] asked for */
	bool		has_from, has_to;
	long long	from_us, to_us;	/* to is exclusive */
	char		search[API_SEARCH_MAX * 4 + 1];
	enum api_sort	sort;
	bool		asc;
	bool		has_cursor;
	char		cursor_val[48];	/* microseconds or a decimal amount */
	char		cursor_id[37];
};

struct api_call;
typedef void api_run(struct api_call *c);
struct api_status;
struct api_bulk;

/* A request in progress: who asked, and what. */
struct api_call {
	struct httpd_req *hr;
	api_run		*run;		/* what to do once authenticated */
	char		creator[37];
	struct api_list	list;
	struct api_status *st;		/* POST .../status */
	struct api_bulk	*bulk;		/* POST .../bulk/status */
	bool		by_uuid;
	bool		cache_fill;	/* GET found no copy and no tombstone: store one */
};

static void api_prepare_status(struct pg_pool *pg);
static void api_prepare_workflow(struct pg_pool *pg);
static void api_prepare_bulk(struct pg_pool *pg);
static bool api_order_id(struct httpd_req *hr, bool *by_uuid);
static void api_begin_order(struct httpd_req *hr, api_run *run);

/* ---- authentication, rate limit ---------------------------------------- */

static void
api_call_free(struct api_call *c)
{
	free(c->st);
	free(c);
}

/* Send b for c; when the pool refuses, answer 503 and free c. */
static void
api_submit(struct api_call *c, struct pg_batch *b)
{
	if (pg_submit(c->hr->w->pg, b) != PG_OK) {
		httpd_unavailable(c->hr, 1, "database unavailable");
		api_call_free(c);
	}
}


static void
api_on_limit(const struct rl_result *r, void *arg)
{
	struct api_call *c = arg;

	if (!r->allowed) {
		ratelimit_reply_429(c->hr, r);
		free(c);
		return;
	}
	ratelimit_headers(c->hr, r);
	c->run(c);
}

static void
api_on_auth(struct httpd_req *hr, const struct auth_result *a, void *arg)
{
	struct api_call *c = arg;
	char subject[64];

	if (hr == NULL || !a->ok) {	/* auth answered the request */
		free(c);
		return;
	}
	snprintf(c->creator, sizeof(c->creator), "%s", a->creator_id);
	snprintf(subject, sizeof(subject), "%c:%s", a->kind == AUTH_KIND_JWT ? 'c' : 'k', a->subject);
	if (!ratelimit_check(hr->w->ratelimit, subject, api_on_limit, c)) {
		httpd_error(hr, 500, "internal", "cannot rate-limit this caller");
		free(c);
	}
}

/* Authenticate, rate-limit, then run; the call is freed by whoever answers. */
static void
api_begin(struct httpd_req *hr, struct api_call *c, api_run *run)
{
	c->hr = hr;
	c->run = run;
	auth_request(hr->w->auth, hr, api_on_auth, c);
}

/* ---- query parameters --------------------------------------------------- */

static bool
api_uuid(const char *s)
{
	char lower[JWT_UUID_LEN + 1];

	return jwt_uuid_parse(s, strlen(s), lower);
}

static int
api_index(const char *const *names, const char *v)
{
	for (int i = 0; names[i] != NULL; i++)
		if (strcmp(names[i], v) == 0)
			return i;
	return -1;
}

/* A whole number in 1..max, or -1. */
static long long
api_number(const char *s, long long max)
{
	char *end;
	long long v;

	if (s[0] < '0' || s[0] > '9' || strlen(s) > 12)
		return -1;
	v = strtoll(s, &end, 10);
	return *end != '\0' || v < 1 || v > max ? -1 : v;
}

/* Add the comma-separated values of v, each one of names, to *mask. */
static bool
api_enum_list(const char *v, const char *const *names, unsigned *mask)
{
	char buf[256], *save = NULL, *tok;
	bool any = false;

	if (v[0] == '\0' || strlen(v) >= sizeof(buf) || v[0] == ',' || v[strlen(v) - 1] == ',' ||
	    strstr(v, ",,") != NULL)
		return false;
	snprintf(buf, sizeof(buf), "%s", v);
	for (tok = strtok_r(buf, ",", &save); tok != NULL; tok = strtok_r(NULL, ",", &save)) {
		int i = api_index(names, tok);

		if (i < 0)
			return false;
		*mask |= 1u << i;
		any = true;
	}
	return any;
}

/* "{a,b}": the array literal of the names in mask; "" when none. */
static void
api_enum_literal(unsigned mask, const char *const *names, char *out, size_t size)
{
	size_t len = 0;

	out[0] = '\0';
	for (int i = 0; names[i] != NULL && mask != 0; i++)
		if (mask & (1u << i))
			len += (size_t)snprintf(out + len, size - len, "%s%s", len == 0 ? "{" : ",",
			    names[i]);
	if (len > 0)
		snprintf(out + len, size - len, "}");
}

/* Well-formed UTF-8 without control characters. */
static bool
api_text_ok(const char *s, size_t n)
{
	for (size_t i = 0; i < n;) {
		unsigned char c = (unsigned char)s[i];
		size_t k = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;

		if (k == 0 || i + k > n || (k == 1 && (c < 0x20 || c == 0x7f)))
			return false;
		for (size_t j = 1; j < k; j++)
			if (((unsigned char)s[i + j] >> 6) != 2)
				return false;
		i += k;
	}
	return true;
}

static bool
api_digits(const char *s, int n)
{
	for (int i = 0; i < n; i++)
		if (s[i] < '0' || s[i] > '9')
			return false;
	return true;
}

/*
 * ISO 8601: YYYY-MM-DD, or YYYY-MM-DDTHH:MM[:SS[.ffffff]] followed by Z or
 * +HH:MM / -HH:MM.  *us is microseconds since the epoch; *date_only says
 * whether a whole day was named.
 */
static bool
api_iso8601(const char *s, long long *us, bool *date_only)
{
	struct tm tm = { 0 };
	long long frac = 0, off = 0;
	int fd = 0;
	size_t n = strlen(s);
	const char *p;

	if (n < 10 || !api_digits(s, 4) || s[4] != '-' || !api_digits(s + 5, 2) || s[7] != '-' ||
	    !api_digits(s + 8, 2))
		return false;
	tm.tm_year = atoi(s) - 1900;
	tm.tm_mon = atoi(s + 5) - 1;
	tm.tm_mday = atoi(s + 8);
	*date_only = n == 10;
	p = s + 10;
	if (!*date_only) {
		if ((*p != 'T' && *p != 't' && *p != ' ') || !api_digits(p + 1, 2) || p[3] != ':' ||
		    !api_digits(p + 4, 2))
			return false;
		tm.tm_hour = atoi(p + 1);
		tm.tm_min = atoi(p + 4);
		p += 6;
		if (*p == ':') {
			if (!api_digits(p + 1, 2))
				return false;
			tm.tm_sec = atoi(p + 1);
			p += 3;
			if (*p == '.') {
				for (p++; *p >= '0' && *p <= '9'; p++, fd++)
					if (fd < 6)
						frac = frac * 10 + (*p - '0');
				if (fd == 0 || fd > 9)
					return false;
				for (int i = fd; i < 6; i++)
					frac *= 10;
			}
		}
		if ((*p == 'Z' || *p == 'z') && p[1] == '\0') {
			off = 0;
		} else if ((*p == '+' || *p == '-') && api_digits(p + 1, 2) && p[3] == ':' &&
		    api_digits(p + 4, 2) && p[6] == '\0') {
			off = (atoi(p + 1) * 60 + atoi(p + 4)) * 60LL * (*p == '+' ? 1 : -1);
			if (atoi(p + 1) > 23 || atoi(p + 4) > 59)
				return false;
		} else {
			return false;
		}
	}
	if (tm.tm_year < 70 || tm.tm_year > 1100 || tm.tm_mon > 11 || tm.tm_mday < 1 ||
	    tm.tm_hour > 23 || tm.tm_min > 59 || tm.tm_sec > 59) {
		return false;
	} else {
		int mday = tm.tm_mday;
		time_t t = timegm(&tm);	/* normalizes 2024-02-31 into March... */

		if (tm.tm_mday != mday)	/* ...which is refused instead */
			return false;
		*us = ((long long)t - off) * 1000000LL + frac;
	}
	return true;
}

/* The cursor: "<sort><a|d>_<value>_<uuid>"; it must match the request's sort. */
static bool
api_cursor(const char *v, struct api_list *l)
{
	const char *dot1 = strchr(v, '_'), *dot2 = dot1 ? strchr(dot1 + 1, '_') : NULL;
	size_t vlen;

	if (dot1 == NULL || dot2 == NULL || dot1 - v != 2 || v[0] != "out"[l->sort] ||
	    v[1] != (l->asc ? 'a' : 'd') || !api_uuid(dot2 + 1))
		return false;
	vlen = (size_t)(dot2 - dot1 - 1);
	if (vlen == 0 || vlen >= sizeof(l->cursor_val))
		return false;
	memcpy(l->cursor_val, dot1 + 1, vlen);
	l->cursor_val[vlen] = '\0';
	for (size_t i = 0; i < vlen; i++) {
		char ch = l->cursor_val[i];

		if (!((ch >= '0' && ch <= '9') || (ch == '-' && i == 0) ||
		    (ch == '.' && l->sort == API_SORT_TOTAL)))
			return false;
	}
	snprintf(l->cursor_id, sizeof(l->cursor_id), "%s", dot2 + 1);
	return true;
}

/* One parameter into l; NULL or the message of a 400. */
static const char *
api_list_param(struct api_list *l, const char *k, const char *v, const char **cursor)
{
	bool day = false;

	if (strcmp(k, "page") == 0)
		return (l->page = api_number(v, API_PAGE_MAX)) < 0 ? "must be an integer in 1..100000" : NULL;
	if (strcmp(k, "limit") == 0)
		return (l->limit = api_number(v, API_LIMIT_MAX)) < 0 ? "must be an integer in 1..200" : NULL;
	if (strcmp(k, "status") == 0)
		return api_enum_list(v, api_order_statuses, &l->status) ? NULL :
		    "must be order statuses: pending, confirmed, processing, shipped, delivered, cancelled, returned";
	if (strcmp(k, "workflow_status") == 0)
		return api_enum_list(v, api_workflow_statuses, &l->wf_status) ? NULL :
		    "must be workflow statuses: new, validated, inventory_reserved, ready_to_ship, shipped, completed, failed";
	if (strcmp(k, "date_from") == 0) {
		l->has_from = api_iso8601(v, &l->from_us, &day);
		return l->has_from ? NULL : "must be an ISO 8601 date or date-time";
	}
	if (strcmp(k, "date_to") == 0) {
		if (!(l->has_to = api_iso8601(v, &l->to_us, &day)))
			return "must be an ISO 8601 date or date-time";
		/* inclusive: the whole day, or the instant itself */
		l->to_us += day ? 86400000000LL : 1;
		return NULL;
	}
	if (strcmp(k, "search") == 0) {
		size_t n = strlen(v);

		if (n == 0 || n > API_SEARCH_MAX || !api_text_ok(v, n))
			return "must be 1..100 characters of UTF-8";
		snprintf(l->search, sizeof(l->search), "%s", v);
		return NULL;
	}
	if (strcmp(k, "sort_by") == 0) {
		int i = api_index(api_sort_names, v);

		l->sort = i < 0 ? l->sort : (enum api_sort)i;
		return i < 0 ? "must be order_date, updated_at or total_amount" : NULL;
	}
	if (strcmp(k, "sort_order") == 0) {
		if (strcmp(v, "asc") != 0 && strcmp(v, "desc") != 0)
			return "must be asc or desc";
		l->asc = strcmp(v, "asc") == 0;
		return NULL;
	}
	if (strcmp(k, "cursor") == 0) {
		*cursor = v;
		return NULL;
	}
	return "is not a parameter of this endpoint";
}

/* Parse the query of a list request; false when it was answered 400. */
static bool
api_list_parse(struct httpd_req *hr, struct api_list *l)
{
	const char *q = evhttp_uri_get_query(evhttp_request_get_evhttp_uri(hr->req));
	const char *cursor = NULL, *bad = NULL, *key = "";
	struct evkeyvalq kv;
	struct evkeyval *e;
	bool page_given = false;

	memset(l, 0, sizeof(*l));
	l->page = 1;
	l->limit = 50;
	TAILQ_INIT(&kv);
	if (q != NULL && (strlen(q) > 4096 || evhttp_parse_query_str(q, &kv) != 0)) {
		httpd_error(hr, 400, "invalid_query", "the query string cannot be parsed");
		return false;
	}
	TAILQ_FOREACH(e, &kv, next) {
		page_given |= strcmp(e->key, "page") == 0;
		if ((bad = api_list_param(l, e->key, e->value, &cursor)) != NULL) {
			key = e->key;
			break;
		}
	}
	if (bad == NULL && cursor != NULL) {
		key = "cursor";
		bad = page_given ? "cannot be combined with page" :
		    !api_cursor(cursor, l) ? "is not a cursor of this sort order" : NULL;
		l->has_cursor = bad == NULL;
	}
	if (bad == NULL && l->has_from && l->has_to && l->from_us >= l->to_us) {
		key = "date_to";
		bad = "must not be before date_from";
	}
	if (bad != NULL)
		httpd_error(hr, 400, "invalid_parameter", "parameter \"%.40s\" %s", key, bad);
	evhttp_clear_headers(&kv);
	return bad == NULL;
}

/* ---- GET /api/orders ---------------------------------------------------- */

/* A statement being built: its text and its parameters (copied by pg_batch_add). */
struct api_sql {
	struct evbuffer	*text;
	const char	*params[12];
	char		store[12][48];
	int		n;
};

/* "$k" for a new parameter holding v (kept in q when short). */
static int
api_param(struct api_sql *q, const char *v)
{
	if (strlen(v) < sizeof(q->store[0])) {
		snprintf(q->store[q->n], sizeof(q->store[0]), "%s", v);
		v = q->store[q->n];
	}
	q->params[q->n++] = v;
	return q->n;
}

static const char *const api_sort_cols[] = { "o.order_date", "o.updated_at", "o.total_amount" };

/* The cursor's value of a row's sort column, as SQL text. */
static const char *
api_sort_key(enum api_sort s)
{
	return s == API_SORT_TOTAL ? "o.total_amount::text" : s == API_SORT_ORDER_DATE ?
	    "(extract(epoch FROM o.order_date) * 1000000)::bigint::text" :
	    "(extract(epoch FROM o.updated_at) * 1000000)::bigint::text";
}

/* The creator, status and workflow_status parameters of a list: $u, $st, $wf (0 = none). */
struct api_keys {
	int	u, st, wf;
};

static struct api_keys
api_key_params(struct api_sql *q, const struct api_call *c)
{
	struct api_keys k = { .u = api_param(q, c->creator) };
	char lit[200];

	if (c->list.status) {
		api_enum_literal(c->list.status, api_order_statuses, lit, sizeof(lit));
		k.st = api_param(q, lit);
	}
	if (c->list.wf_status) {
		api_enum_literal(c->list.wf_status, api_workflow_statuses, lit, sizeof(lit));
		k.wf = api_param(q, lit);
	}
	return k;
}

/* " FROM table o WHERE" the creator, status and workflow_status predicates. */
static void
api_key_where(struct api_sql *q, const char *table, struct api_keys k)
{
	evbuffer_add_printf(q->text, " FROM %s o WHERE o.user_id = $%d::uuid", table, k.u);
	if (k.st)
		evbuffer_add_printf(q->text, " AND o.order_status = ANY ($%d::order_status[])", k.st);
	if (k.wf)
		evbuffer_add_printf(q->text, " AND o.workflow_status = ANY ($%d::workflow_status[])", k.wf);
}

/* WHERE of the filtered set (the cursor only when with_cursor). */
static void
api_where(struct api_sql *q, struct api_call *c, bool with_cursor)
{
	const struct api_list *l = &c->list;
	char num[24];

	api_key_where(q, "orders", api_key_params(q, c));
	if (l->has_from) {
		snprintf(num, sizeof(num), "%lld", l->from_us);
		evbuffer_add_printf(q->text, " AND o.order_date >= 'epoch'::timestamptz +"
		    " $%d::bigint * interval '1 microsecond'", api_param(q, num));
	}
	if (l->has_to) {
		snprintf(num, sizeof(num), "%lld", l->to_us);
		evbuffer_add_printf(q->text, " AND o.order_date < 'epoch'::timestamptz +"
		    " $%d::bigint * interval '1 microsecond'", api_param(q, num));
	}
	if (l->search[0] != '\0') {
		/* Prefix ranges the text_pattern_ops indexes can scan. */
		int k = api_param(q, l->search);

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
		int v = api_param(q, l->cursor_val), id = api_param(q, l->cursor_id);
		char val[96];

		if (l->sort == API_SORT_TOTAL)
			snprintf(val, sizeof(val), "$%d::numeric", v);
		else
			snprintf(val, sizeof(val),
			    "'epoch'::timestamptz + $%d::bigint * interval '1 microsecond'", v);
		evbuffer_add_printf(q->text, " AND (%s, o.id) %s (%s, $%d::uuid)",
		    api_sort_cols[l->sort], l->asc ? ">" : "<", val, id);
	}
}

#define API_DAY_US 86400000000LL

static long long
api_floor_div(long long a, long long b)
{
	return a / b - (a % b != 0 && (a < 0) != (b < 0));
}

/* "$k" for a new parameter holding the number v. */
static int
api_ll_param(struct api_sql *q, long long v)
{
	char num[24];

	snprintf(num, sizeof(num), "%lld", v);
	return api_param(q, num);
}

/* The orders of [from_us, to_us): what order_stats cannot split (part of a day). */
static void
api_summary_edge(struct api_sql *q, struct api_keys k, long long from_us, long long to_us,
    bool first)
{
	int a = api_ll_param(q, from_us), b = api_ll_param(q, to_us);

	evbuffer_add_printf(q->text, "%sSELECT o.order_status, 1 AS n, o.total_amount AS s",
	    first ? "" : " UNION ALL ");
	api_key_where(q, "orders", k);
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
api_summary_stats(struct api_sql *q, struct api_call *c)
{
	const struct api_list *l = &c->list;
	struct api_keys k = api_key_params(q, c);
	long long lo = 0, hi = 0;	/* the whole days [lo, hi), days since 1970-01-01 */
	int lo_k = 0, hi_k = 0;

	if (l->has_from)
		lo = -api_floor_div(-l->from_us, API_DAY_US);
	if (l->has_to)
		hi = api_floor_div(l->to_us, API_DAY_US);
	evbuffer_add_printf(q->text, "SELECT x.order_status, sum(x.n)::bigint AS n, sum(x.s) AS s FROM (");
	if (l->has_from && l->has_to && lo >= hi) {
		/* less than two days: no whole day to read from order_stats */
		api_summary_edge(q, k, l->from_us, l->to_us, true);
		evbuffer_add_printf(q->text, ") x GROUP BY x.order_status");
		return;
	}
	if (l->has_from)
		lo_k = api_ll_param(q, lo);
	if (l->has_to)
		hi_k = api_ll_param(q, hi);
	for (int i = 0; i < 2; i++) {
		evbuffer_add_printf(q->text, "%sSELECT o.order_status, o.orders AS n, o.amount AS s",
		    i ? " UNION ALL " : "");
		api_key_where(q, i ? "order_stats_delta" : "order_stats", k);
		if (lo_k)
			evbuffer_add_printf(q->text, " AND o.day >= DATE '1970-01-01' + $%d::integer", lo_k);
		if (hi_k)
			evbuffer_add_printf(q->text, " AND o.day < DATE '1970-01-01' + $%d::integer", hi_k);
	}
	if (l->has_from && lo * API_DAY_US != l->from_us)
		api_summary_edge(q, k, l->from_us, lo * API_DAY_US, false);
	if (l->has_to && hi * API_DAY_US != l->to_us)
		api_summary_edge(q, k, hi * API_DAY_US, l->to_us, false);
	evbuffer_add_printf(q->text, ") x GROUP BY x.order_status");
}

/* Add the page statement and the summary statement of c to b. */
static void
api_list_statements(struct pg_batch *b, struct api_call *c)
{
	const struct api_list *l = &c->list;
	struct api_sql q = { .n = 0 };
	const char *dir = l->asc ? "ASC" : "DESC";
	char num[24];

	q.text = evbuffer_new();
	/* One row per order: the JSON array is joined in api_on_list, cheaper than json_agg. */
	evbuffer_add_printf(q.text, "SELECT row_to_json(o)::text, %s, o.id::text",
	    api_sort_key(l->sort));
	api_where(&q, c, true);
	snprintf(num, sizeof(num), "%lld", l->limit);
	evbuffer_add_printf(q.text, " ORDER BY %s %s, o.id %s LIMIT $%d::integer",
	    api_sort_cols[l->sort], dir, dir, api_param(&q, num));
	if (!l->has_cursor && l->page > 1) {
		snprintf(num, sizeof(num), "%lld", (l->page - 1) * l->limit);
		evbuffer_add_printf(q.text, " OFFSET $%d::bigint", api_param(&q, num));
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
		api_summary_stats(&q, c);
	} else {
		/* a search matches few rows, through its own indexes */
		evbuffer_add_printf(q.text, "SELECT o.order_status, count(*) AS n, sum(o.total_amount) AS s");
		api_where(&q, c, false);
		evbuffer_add_printf(q.text, " GROUP BY o.order_status");
	}
	evbuffer_add_printf(q.text, ") g ON g.order_status = st");
	evbuffer_add(q.text, "", 1);
	pg_batch_add(b, false, (const char *)evbuffer_pullup(q.text, -1), q.n, q.params);
	evbuffer_free(q.text);
}

static void
api_on_list(struct pg_batch *b, void *arg)
{
	struct api_call *c = arg;
	const struct api_list *l = &c->list;
	PGresult *page = pg_batch_result(b, 0), *sum = pg_batch_result(b, 1);
	struct evbuffer *out;
	long long total, rows;

	if (pg_batch_error(b) != NULL || page == NULL || sum == NULL || PQnfields(page) != 3 ||
	    PQntuples(page) > l->limit || PQntuples(sum) != 1) {
		log_warn("order list failed", "error=%s", log_quote(pg_batch_error(b)));
		httpd_unavailable(c->hr, 1, "the orders cannot be read now");
		free(c);
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
	httpd_reply(c->hr, 200, "application/json", (const char *)evbuffer_pullup(out, -1),
	    evbuffer_get_length(out));
	evbuffer_free(out);
	free(c);
}

static void
api_list_run(struct api_call *c)
{
	struct pg_batch *b = pg_batch_new(api_on_list, c);

	api_list_statements(b, c);
	api_submit(c, b);
}

void
api_orders_list(struct httpd_req *hr)
{
	struct api_call *c = xcalloc(1, sizeof(*c));

	if (!api_list_parse(hr, &c->list)) {
		free(c);
		return;
	}
	api_begin(hr, c, api_list_run);
}

/* ---- the order cache (Redis) ------------------------------------------- */

/*
 * "of:order:<creator>:<id as asked>".  A change writes a tombstone over
 * both keys of the order (its UUID and TikTok id) instead of deleting them,
 * and a reader stores its copy only with NX and only if it saw no key at
 * all: a reader that read the database before the change can then never
 * put its stale copy back after it.
 */
#define API_TOMBSTONE "-"

static void
api_cache_key(char *key, size_t size, const char *creator, const char *id)
{
	snprintf(key, size, "of:order:%s:%s", creator, id);
}

static void
api_on_cache_write(struct redisReply *reply, void *arg)
{
	(void)reply;
	(void)arg;
}

/* Mark both keys of an order changed (called after the change committed). */
void
api_cache_forget(struct worker *w, const char *creator, const char *uuid, const char *tiktok_id)
{
	const char *ids[2] = { uuid, tiktok_id };
	long long ms = w->cfg->postgres.query_timeout + 1000;
	char key[160];

	if (w->cfg->api.order_cache_ttl == 0)
		return;
	for (int i = 0; i < 2; i++) {
		if (ids[i] == NULL || ids[i][0] == '\0')
			continue;
		api_cache_key(key, sizeof(key), creator, ids[i]);
		if (!rds_command(w->rds, api_on_cache_write, NULL, "SET %s %s PX %lld", key,
		    API_TOMBSTONE, ms))
			log_warn("order cache not invalidated: Redis unavailable", "key=%s", key);
	}
}

void
api_cache_forget_list(struct worker *w, const char *changed)
{
	char *list, *line, *save = NULL;

	if (changed == NULL || w->cfg->api.order_cache_ttl == 0)
		return;
	list = xstrdup(changed);
	for (line = strtok_r(list, "\n", &save); line != NULL; line = strtok_r(NULL, "\n", &save)) {
		char *creator = line, *uuid = strchr(line, ' '), *tiktok;

		if (uuid == NULL || (tiktok = strchr(uuid + 1, ' ')) == NULL)
			continue;
		*uuid++ = '\0';
		*tiktok++ = '\0';
		api_cache_forget(w, creator, uuid, tiktok);
	}
	free(list);
}

static void api_order_query(struct api_call *c);

static void
api_on_cached(struct redisReply *reply, void *arg)
{
	struct api_call *c = arg;

	if (reply != NULL && reply->type == REDIS_REPLY_STRING &&
	    strcmp(reply->str, API_TOMBSTONE) != 0) {
		httpd_reply(c->hr, 200, "application/json", reply->str, reply->len);
		free(c);
		return;
	}
	c->cache_fill = reply != NULL && reply->type == REDIS_REPLY_NIL;
	api_order_query(c);
}

/* ---- GET /api/orders/{id} ------------------------------------------------ */

/*
 * The order with its items, workflow and history: one document from
 * PostgreSQL.  Built from json text rather than jsonb: jsonb would parse,
 * sort and re-print every nested value, about five times the CPU of the
 * whole statement.  row_to_json(o) always ends in '}', so the order's
 * object is reopened there.
 */
static const char api_order_sql[] =
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
    "  'delivered_date', o.delivered_date)::text || '}}'"
    " FROM orders o WHERE o.user_id = $1::uuid AND ";

static void
api_on_order(struct pg_batch *b, void *arg)
{
	struct api_call *c = arg;
	PGresult *r = pg_batch_result(b, 0);

	if (pg_batch_error(b) != NULL || r == NULL) {
		log_warn("order read failed", "error=%s", log_quote(pg_batch_error(b)));
		httpd_unavailable(c->hr, 1, "the order cannot be read now");
	} else if (PQntuples(r) == 0) {
		httpd_error(c->hr, 404, "not_found", "no such order");
	} else {
		if (c->cache_fill) {
			char key[160];

			api_cache_key(key, sizeof(key), c->creator, c->hr->params[0]);
			if (!rds_command(c->hr->w->rds, api_on_cache_write, NULL, "SET %s %b PX %lld NX",
			    key, PQgetvalue(r, 0, 0), (size_t)PQgetlength(r, 0, 0),
			    (long long)c->hr->w->cfg->api.order_cache_ttl))
				log_debug("order not cached: Redis unavailable", "key=%s", key);
		}
		httpd_reply(c->hr, 200, "application/json", PQgetvalue(r, 0, 0),
		    (size_t)PQgetlength(r, 0, 0));
	}
	free(c);
}

static void
api_order_run(struct api_call *c)
{
	char key[160];

	api_cache_key(key, sizeof(key), c->creator, c->hr->params[0]);
	if (c->hr->w->cfg->api.order_cache_ttl == 0 ||
	    !rds_command(c->hr->w->rds, api_on_cached, c, "GET %s", key))
		api_order_query(c);
}

static void
api_order_query(struct api_call *c)
{
	struct pg_batch *b = pg_batch_new(api_on_order, c);

	pg_batch_add(b, true, c->by_uuid ? "api_order_by_id" : "api_order_by_tiktok_id", 2,
	    (const char *[]){ c->creator, c->hr->params[0] });
	api_submit(c, b);
}

void
api_order_get(struct httpd_req *hr)
{
	const char *q = evhttp_uri_get_query(evhttp_request_get_evhttp_uri(hr->req));

	if (q != NULL && q[0] != '\0') {
		httpd_error(hr, 400, "invalid_parameter", "this endpoint takes no query parameters");
		return;
	}
	api_begin_order(hr, api_order_run);
}

void
api_prepare(struct pg_pool *pg)
{
	char sql[sizeof(api_order_sql) + 64];

	snprintf(sql, sizeof(sql), "%so.id = $2::uuid", api_order_sql);
	pg_pool_prepare(pg, "api_order_by_id", sql);
	snprintf(sql, sizeof(sql), "%so.tiktok_order_id = $2", api_order_sql);
	pg_pool_prepare(pg, "api_order_by_tiktok_id", sql);
	api_prepare_status(pg);
	api_prepare_workflow(pg);
	api_prepare_bulk(pg);
}

/* ---- POST /api/orders/{id}/status -------------------------------------- */

/* The statuses an order in status col may move to, as SQL (an order_status[]). */
#define API_ALLOWED(col) \
    " CASE " col " WHEN 'pending' THEN '{confirmed,cancelled}'" \
    " WHEN 'confirmed' THEN '{processing,cancelled}' WHEN 'processing' THEN '{shipped,cancelled}'" \
    " WHEN 'shipped' THEN '{delivered}' WHEN 'delivered' THEN '{returned}'" \
    " ELSE '{}' END::order_status[]"

/*
 * The order-status state machine (orderflowd(8) lists it): cancel only
 * before shipping, returned only after delivery, nothing after either.
 * One statement: lock the order, judge the change, apply it with its
 * history, audit and queued outbound actions, or say why not.
 */
static const char api_status_sql[] =
    "WITH o AS (SELECT * FROM orders WHERE user_id = $1::uuid AND %s FOR UPDATE),"
    " v AS (SELECT o.id, o.order_status AS prev, o.version, " API_ALLOWED("o.order_status")
    "  AS allowed FROM o),"
    " j AS (SELECT v.*, CASE WHEN $4::integer IS NOT NULL AND v.version <> $4::integer THEN 'stale'"
    "  WHEN NOT ($3::order_status = ANY (v.allowed)) THEN 'illegal' ELSE 'ok' END AS verdict FROM v),"
    " up AS (UPDATE orders x SET order_status = $3::order_status, version = x.version + 1,"
    "  shipped_date = CASE WHEN $3::order_status = 'shipped' THEN coalesce(x.shipped_date, now())"
    "  ELSE x.shipped_date END,"
    "  delivered_date = CASE WHEN $3::order_status = 'delivered' THEN coalesce(x.delivered_date, now())"
    "  ELSE x.delivered_date END"
    "  FROM j WHERE x.id = j.id AND j.verdict = 'ok' RETURNING x.*),"
    " hi AS (INSERT INTO order_status_history (order_id, user_id, previous_status, new_status,"
    "  status_reason, changed_by, change_source, metadata)"
    "  SELECT up.id, up.user_id, j.prev, up.order_status, $5, $1::uuid, 'user',"
    "  jsonb_build_object('notify_customer', $6::boolean, 'sync_to_tiktok', $7::boolean)"
    "  FROM up JOIN j USING (id) RETURNING 1),"
    " au AS (INSERT INTO audit_log (user_id, actor, action, entity_type, entity_id, before, after)"
    "  SELECT up.user_id, 'user:' || $1, 'order.status_changed', 'order', up.id::text,"
    "  jsonb_build_object('order_status', j.prev, 'version', j.version),"
    "  jsonb_build_object('order_status', up.order_status, 'version', up.version, 'reason', $5)"
    "  FROM up JOIN j USING (id) RETURNING 1),"
    " ac AS (INSERT INTO order_actions (order_id, user_id, action, payload)"
    "  SELECT up.id, up.user_id, a, jsonb_build_object('status', up.order_status, 'reason', $5)"
    "  FROM up CROSS JOIN unnest(ARRAY[CASE WHEN $7::boolean THEN 'sync_to_tiktok' END,"
    "  CASE WHEN $6::boolean THEN 'notify_customer' END]) a WHERE a IS NOT NULL RETURNING action)"
    " SELECT j.verdict, j.prev::text, j.version, array_to_json(j.allowed)::text,"
    "  (SELECT to_jsonb(up)::text FROM up), (SELECT coalesce(json_agg(action), '[]')::text FROM ac),"
    "  (SELECT count(*) FROM hi) + (SELECT count(*) FROM au), j.id::text, (SELECT tiktok_order_id FROM o)"
    " FROM j";

/* Bytes of a reason: 255 characters of UTF-8 and the NUL. */
#define API_REASON_SIZE (255 * 4 + 1)

/* A status change request, validated. */
struct api_status {
	char		status[16];
	char		reason[API_REASON_SIZE];
	bool		has_reason;
	bool		notify, sync;
	long long	version;	/* 0: not given */
};

/* The JSON object of the body; NULL when the request was answered (415, 400). */
static json_t *
api_body(struct httpd_req *hr)
{
	struct evbuffer *in = evhttp_request_get_input_buffer(hr->req);
	size_t len = evbuffer_get_length(in);
	json_error_t jerr;
	json_t *doc;

	if (!httpd_is_json(hr)) {
		httpd_error(hr, 415, "unsupported_media_type", "Content-Type must be application/json");
		return NULL;
	}
	doc = json_loadb((const char *)evbuffer_pullup(in, -1), len, JSON_REJECT_DUPLICATES, &jerr);
	if (doc == NULL || !json_is_object(doc)) {
		httpd_error(hr, 400, "invalid_body", "the body must be a JSON object%s%.80s",
		    doc == NULL ? ": " : "", doc == NULL ? jerr.text : "");
		json_decref(doc);
		return NULL;
	}
	return doc;
}

/* If-Match: 7 or "7" (or W/"7"); 0 when absent, -1 when malformed. */
static long long
api_if_match(struct httpd_req *hr)
{
	const char *h = evhttp_find_header(evhttp_request_get_input_headers(hr->req), "If-Match");
	char buf[32];
	size_t n;

	if (h == NULL)
		return 0;
	if (strncmp(h, "W/", 2) == 0)
		h += 2;
	n = strlen(h);
	if (n >= 2 && h[0] == '"' && h[n - 1] == '"') {
		h++;
		n -= 2;
	}
	if (n == 0 || n >= sizeof(buf))
		return -1;
	memcpy(buf, h, n);
	buf[n] = '\0';
	return api_number(buf, 2147483647LL);
}

/* Characters (code points) of well-formed UTF-8. */
static size_t
api_chars(const char *s)
{
	size_t n = 0;

	for (; *s != '\0'; s++)
		n += ((unsigned char)*s >> 6) != 2;
	return n;
}

/* A status change's "reason": null, or text of at most 255 characters. */
static bool
api_reason(json_t *v, char out[API_REASON_SIZE], bool *has)
{
	if (json_is_null(v))
		return true;
	if (!json_is_string(v) || json_string_length(v) >= API_REASON_SIZE ||
	    !api_text_ok(json_string_value(v), json_string_length(v)) ||
	    api_chars(json_string_value(v)) > 255)
		return false;
	memcpy(out, json_string_value(v), json_string_length(v) + 1);
	*has = true;
	return true;
}

/* Fields of the status body into s; NULL or the message of a 400. */
static const char *
api_status_fields(json_t *doc, struct api_status *s)
{
	const char *k;
	json_t *v;

	json_object_foreach(doc, k, v) {
		if (strcmp(k, "status") == 0) {
			if (!json_is_string(v) || api_index(api_order_statuses, json_string_value(v)) < 0)
				return "\"status\" must be an order status";
			snprintf(s->status, sizeof(s->status), "%s", json_string_value(v));
		} else if (strcmp(k, "reason") == 0) {
			if (!api_reason(v, s->reason, &s->has_reason))
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
			return "the body has a field this endpoint does not know";
		}
	}
	return s->status[0] == '\0' ? "\"status\" is required" : NULL;
}


static void
api_on_status(struct pg_batch *b, void *arg)
{
	struct api_call *c = arg;
	struct httpd_req *hr = c->hr;
	PGresult *r = pg_batch_result(b, 0);
	const char *verdict;

	if (pg_batch_error(b) != NULL || r == NULL) {
		log_warn("status change failed", "error=%s", log_quote(pg_batch_error(b)));
		httpd_unavailable(hr, 1, "the order cannot be changed now");
	} else if (PQntuples(r) == 0) {
		httpd_error(hr, 404, "not_found", "no such order");
	} else if (strcmp((verdict = PQgetvalue(r, 0, 0)), "stale") == 0) {
		httpd_error(hr, 412, "version_mismatch", "the order is at version %s, not %lld; "
		    "read it again", PQgetvalue(r, 0, 2), c->st->version);
	} else if (strcmp(verdict, "illegal") == 0) {
		httpd_error(hr, 409, "invalid_transition", "an order that is %s cannot become %s; "
		    "allowed next statuses: %s", PQgetvalue(r, 0, 1), c->st->status, PQgetvalue(r, 0, 3));
	} else {
		struct evbuffer *out = evbuffer_new();

		api_cache_forget(hr->w, c->creator, PQgetvalue(r, 0, 7), PQgetvalue(r, 0, 8));
		evbuffer_add_printf(out, "{\"success\":true,\"order\":%s,\"queued_actions\":%s}",
		    PQgetvalue(r, 0, 4), PQgetvalue(r, 0, 5));
		httpd_reply(hr, 200, "application/json", (const char *)evbuffer_pullup(out, -1),
		    evbuffer_get_length(out));
		evbuffer_free(out);
	}
	api_call_free(c);
}

static void
api_status_run(struct api_call *c)
{
	struct api_status *s = xcalloc(1, sizeof(*s));
	long long if_match = api_if_match(c->hr);
	json_t *doc = api_body(c->hr);
	const char *bad;
	char version[24];
	struct pg_batch *b;

	c->st = s;
	if (doc == NULL) {
		api_call_free(c);
		return;
	}
	bad = api_status_fields(doc, s);
	json_decref(doc);
	if (bad == NULL && if_match < 0)
		bad = "If-Match must be the order's version";
	else if (bad == NULL && if_match > 0 && s->version > 0 && if_match != s->version)
		bad = "If-Match and \"version\" differ";
	if (bad != NULL) {
		httpd_error(c->hr, 400, "invalid_body", "%s", bad);
		api_call_free(c);
		return;
	}
	if (s->version == 0)
		s->version = if_match;
	snprintf(version, sizeof(version), "%lld", s->version);
	b = pg_batch_new(api_on_status, c);
	pg_batch_add(b, true, c->by_uuid ? "api_status_by_id" : "api_status_by_tiktok_id", 7,
	    (const char *[]){ c->creator, c->hr->params[0], s->status, s->version > 0 ? version : NULL,
	    s->has_reason ? s->reason : NULL, s->notify ? "true" : "false", s->sync ? "true" : "false" });
	api_submit(c, b);
}

/* The {id} of a request: a UUID or a TikTok order id; false when answered 400. */
static bool
api_order_id(struct httpd_req *hr, bool *by_uuid)
{
	const char *id = hr->params[0];
	size_t n = strlen(id);

	if (n == 0 || n > 64 || !api_text_ok(id, n)) {
		httpd_error(hr, 400, "invalid_parameter", "the order id must be a UUID or a TikTok order id");
		return false;
	}
	*by_uuid = api_uuid(id);
	for (char *p = hr->params[0]; *by_uuid && *p != '\0'; p++)
		*p = (char)tolower((unsigned char)*p);	/* one cache key per order */
	return true;
}

/* An /api/orders/{id}... request: check the id, then authenticate and run. */
static void
api_begin_order(struct httpd_req *hr, api_run *run)
{
	bool by_uuid;
	struct api_call *c;

	if (!api_order_id(hr, &by_uuid))
		return;
	c = xcalloc(1, sizeof(*c));
	c->by_uuid = by_uuid;
	api_begin(hr, c, run);
}

void
api_order_status(struct httpd_req *hr)
{
	api_begin_order(hr, api_status_run);
}

static void api_prepare_one(struct pg_pool *pg, const char *name, const char *tmpl, bool by_uuid);

static void
api_prepare_status(struct pg_pool *pg)
{
	api_prepare_one(pg, "api_status_by_id", api_status_sql, true);
	api_prepare_one(pg, "api_status_by_tiktok_id", api_status_sql, false);
}

/* ---- POST /api/orders/{id}/workflow ------------------------------------ */

/* The workflows the engine knows; a request names one of them. */
static const char *const api_workflows[] = {
	"standard_fulfillment", "cancellation", "return", NULL
};

/* force_restart: the running instance is cancelled first, in the same transaction. */
static const char api_wf_stop_sql[] =
    "UPDATE order_workflows w SET workflow_status = 'cancelled', failed_at = now(),"
    " last_error = 'restarted by the user'"
    " FROM orders o WHERE o.user_id = $1::uuid AND o.%s AND w.order_id = o.id"
    " AND w.workflow_name = $3 AND w.workflow_status = 'running' AND $4::boolean";
/* At most one running instance per order and name (a unique partial index). */
static const char api_wf_start_sql[] =
    "WITH o AS (SELECT id, user_id FROM orders WHERE user_id = $1::uuid AND %s FOR UPDATE),"
    " ins AS (INSERT INTO order_workflows (order_id, user_id, workflow_name, current_step,"
    "  workflow_config) SELECT o.id, o.user_id, $3, 'requested', $5::jsonb FROM o"
    "  ON CONFLICT (order_id, workflow_name) WHERE workflow_status = 'running' DO NOTHING"
    "  RETURNING id, order_id),"
    " au AS (INSERT INTO audit_log (user_id, actor, action, entity_type, entity_id, after)"
    "  SELECT $1::uuid, 'user:' || $1, 'workflow.requested', 'order', ins.order_id::text,"
    "  jsonb_build_object('workflow_id', ins.id, 'workflow_name', $3::text,"
    "  'force_restart', $4::boolean) FROM ins RETURNING 1)"
    " SELECT (SELECT count(*) FROM o), (SELECT id::text FROM ins), (SELECT count(*) FROM au),"
    "  (SELECT id::text FROM o)";

/* Largest workflow config accepted, serialized. */
#define API_WF_CONFIG_MAX 16384

struct api_wf {
	char	name[32];
	bool	force;
	char	*config;	/* JSON text of an object, or NULL */
};

static const char *
api_wf_fields(json_t *doc, struct api_wf *wf)
{
	const char *k;
	json_t *v;

	json_object_foreach(doc, k, v) {
		if (strcmp(k, "workflow_name") == 0) {
			if (!json_is_string(v) || api_index(api_workflows, json_string_value(v)) < 0)
				return "\"workflow_name\" must be standard_fulfillment, cancellation or return";
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
			wf->config = json_dumps(v, JSON_COMPACT);
			if (wf->config == NULL || strlen(wf->config) > API_WF_CONFIG_MAX)
				return "\"config\" is too large (16 KiB at most)";
		} else {
			return "the body has a field this endpoint does not know";
		}
	}
	return wf->name[0] == '\0' ? "\"workflow_name\" is required" : NULL;
}

static void
api_on_workflow(struct pg_batch *b, void *arg)
{
	struct api_call *c = arg;
	PGresult *r = pg_batch_result(b, 1);
	char body[128];

	if (pg_batch_error(b) != NULL || r == NULL || PQntuples(r) != 1) {
		log_warn("workflow request failed", "error=%s", log_quote(pg_batch_error(b)));
		httpd_unavailable(c->hr, 1, "the workflow cannot be requested now");
	} else if (strcmp(PQgetvalue(r, 0, 0), "0") == 0) {
		httpd_error(c->hr, 404, "not_found", "no such order");
	} else if (PQgetisnull(r, 0, 1)) {
		httpd_error(c->hr, 409, "workflow_running", "a workflow of this name is already running "
		    "for the order; send \"force_restart\": true to start it again");
	} else {
		api_cache_forget(c->hr->w, c->creator, PQgetvalue(r, 0, 3), NULL);
		snprintf(body, sizeof(body), "{\"success\":true,\"workflow_id\":\"%s\"}",
		    PQgetvalue(r, 0, 1));
		httpd_reply(c->hr, 200, "application/json", body, strlen(body));
	}
	free(c);
}

static void
api_workflow_run(struct api_call *c)
{
	struct api_wf wf = { .config = NULL };
	json_t *doc = api_body(c->hr);
	const char *bad, *params[5];
	struct pg_batch *b;

	if (doc == NULL) {
		free(c);
		return;
	}
	bad = api_wf_fields(doc, &wf);
	json_decref(doc);
	if (bad != NULL) {
		httpd_error(c->hr, 400, "invalid_body", "%s", bad);
		free(wf.config);
		free(c);
		return;
	}
	params[0] = c->creator;
	params[1] = c->hr->params[0];
	params[2] = wf.name;
	params[3] = wf.force ? "true" : "false";
	params[4] = wf.config;
	b = pg_batch_new(api_on_workflow, c);
	pg_batch_add(b, true, c->by_uuid ? "api_wf_stop_by_id" : "api_wf_stop_by_tiktok_id", 4, params);
	pg_batch_add(b, true, c->by_uuid ? "api_wf_start_by_id" : "api_wf_start_by_tiktok_id", 5, params);
	free(wf.config);
	api_submit(c, b);
}

void
api_order_workflow(struct httpd_req *hr)
{
	api_begin_order(hr, api_workflow_run);
}

/* Prepare tmpl with its one "%s" replaced by the order lookup by UUID or TikTok id. */
static void
api_prepare_one(struct pg_pool *pg, const char *name, const char *tmpl, bool by_uuid)
{
	const char *at = strstr(tmpl, "%s");
	char sql[4096];

	snprintf(sql, sizeof(sql), "%.*s%s%s", (int)(at - tmpl), tmpl,
	    by_uuid ? "id = $2::uuid" : "tiktok_order_id = $2", at + 2);
	pg_pool_prepare(pg, name, sql);
}

static void
api_prepare_workflow(struct pg_pool *pg)
{
	api_prepare_one(pg, "api_wf_stop_by_id", api_wf_stop_sql, true);
	api_prepare_one(pg, "api_wf_stop_by_tiktok_id", api_wf_stop_sql, false);
	api_prepare_one(pg, "api_wf_start_by_id", api_wf_start_sql, true);
	api_prepare_one(pg, "api_wf_start_by_tiktok_id", api_wf_start_sql, false);
}

/* ---- POST /api/orders/bulk/status, GET /api/orders/bulk/{id} ------------ */

static const char api_bulk_create_sql[] =
    "INSERT INTO bulk_batches (user_id, target_status, reason, batch_size, total)"
    " VALUES ($1::uuid, $2::order_status, $3, $4::integer, $5::integer) RETURNING id::text";

/*
 * One chunk of a batch, one transaction: each id is looked up among the
 * caller's orders only (another creator's order is "not found"), judged
 * against the state machine, changed with its history and audit rows, and
 * its outcome stored.  An order named twice counts once.
 */
static const char api_bulk_chunk_sql[] =
    "WITH req AS (SELECT r.k, (r.i + $4::integer)::integer AS n"
    "  FROM unnest($3::text[]) WITH ORDINALITY AS r(k, i)),"
    " m AS (SELECT req.k, req.n, o.id, o.order_status FROM req LEFT JOIN LATERAL"
    "  (SELECT x.id, x.order_status FROM orders x WHERE x.user_id = $2::uuid AND"
    "  (x.id = CASE WHEN req.k ~ '^[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$'"
    "  THEN req.k::uuid END OR x.tiktok_order_id = req.k) LIMIT 1 FOR UPDATE) o ON true),"
    " j AS (SELECT m.*, CASE WHEN m.id IS NULL THEN 'not found'"
    "  WHEN row_number() OVER (PARTITION BY m.id ORDER BY m.n) > 1"
    "  THEN 'the same order is named earlier in the batch'"
    "  WHEN NOT ($5::order_status = ANY (" API_ALLOWED("m.order_status") "))"
    "  THEN 'an order that is ' || m.order_status || ' cannot become ' || $5 END AS error FROM m),"
    " up AS (UPDATE orders x SET order_status = $5::order_status, version = x.version + 1,"
    "  shipped_date = CASE WHEN $5::order_status = 'shipped' THEN coalesce(x.shipped_date, now())"
    "  ELSE x.shipped_date END,"
    "  delivered_date = CASE WHEN $5::order_status = 'delivered' THEN coalesce(x.delivered_date, now())"
    "  ELSE x.delivered_date END"
    "  FROM j WHERE x.id = j.id AND j.error IS NULL"
    "  RETURNING x.id, x.user_id, x.tiktok_order_id, x.order_status, x.version),"
    " hi AS (INSERT INTO order_status_history (order_id, user_id, previous_status, new_status,"
    "  status_reason, changed_by, change_source, metadata)"
    "  SELECT up.id, up.user_id, j.order_status, up.order_status, $6, $2::uuid, 'user',"
    "  jsonb_build_object('bulk_batch_id', $1::text) FROM up JOIN j ON j.id = up.id"
    "  AND j.error IS NULL RETURNING 1),"
    " au AS (INSERT INTO audit_log (user_id, actor, action, entity_type, entity_id, before, after)"
    "  SELECT up.user_id, 'user:' || $2, 'order.status_changed', 'order', up.id::text,"
    "  jsonb_build_object('order_status', j.order_status, 'version', up.version - 1),"
    "  jsonb_build_object('order_status', up.order_status, 'version', up.version, 'reason', $6::text,"
    "  'bulk_batch_id', $1::text) FROM up JOIN j ON j.id = up.id AND j.error IS NULL RETURNING 1),"
    " it AS (INSERT INTO bulk_batch_items (batch_id, n, order_key, order_id, ok, error)"
    "  SELECT $1::uuid, j.n, j.k, j.id, j.error IS NULL, j.error FROM j RETURNING 1),"
    " bb AS (UPDATE bulk_batches SET processed = processed + (SELECT count(*) FROM up),"
    "  failed = failed + (SELECT count(*) FROM j WHERE error IS NOT NULL)"
    "  WHERE id = $1::uuid AND user_id = $2::uuid RETURNING 1)"
    " SELECT (SELECT count(*) FROM up), (SELECT coalesce(json_agg(json_build_object("
    "  'order_id', k, 'error', error) ORDER BY n) FILTER (WHERE error IS NOT NULL), '[]')::text FROM j),"
    "  (SELECT string_agg(u.user_id || ' ' || u.id || ' ' || u.tiktok_order_id, E'\\n') FROM up u),"
    "  (SELECT count(*) FROM it), (SELECT count(*) FROM bb), (SELECT count(*) FROM hi) + (SELECT count(*) FROM au)";

static const char api_bulk_finish_sql[] =
    "UPDATE bulk_batches SET state = $3, finished_at = now()"
    " WHERE id = $1::uuid AND user_id = $2::uuid";

static const char api_bulk_get_sql[] =
    "SELECT json_build_object('batch_id', b.id, 'state', b.state, 'status', b.target_status,"
    " 'reason', b.reason, 'batch_size', b.batch_size, 'total', b.total, 'processed', b.processed,"
    " 'failed', b.failed, 'created_at', b.created_at, 'finished_at', b.finished_at,"
    " 'items', (SELECT coalesce(json_agg(json_build_object('order_id', i.order_key, 'ok', i.ok,"
    "  'error', i.error) ORDER BY i.n), '[]') FROM bulk_batch_items i WHERE i.batch_id = b.id))::text"
    " FROM bulk_batches b WHERE b.id = $1::uuid AND b.user_id = $2::uuid";

/* A bulk request in progress. */
struct api_bulk {
	char		**keys;
	int		n, next, size;
	char		status[16];
	char		reason[API_REASON_SIZE];
	bool		has_reason;
	char		batch_id[37];
	long long	processed, failed;
	bool		interrupted;	/* a chunk failed: the rest was not tried */
	struct evbuffer	*errors;	/* the error objects so far, comma-separated */
};

static void
api_bulk_free(struct api_call *c, struct api_bulk *bk)
{
	for (int i = 0; i < bk->n; i++)
		free(bk->keys[i]);
	free(bk->keys);
	if (bk->errors != NULL)
		evbuffer_free(bk->errors);
	free(bk);
	free(c);
}

static const char *
api_bulk_fields(json_t *doc, struct api_bulk *bk, long long max)
{
	const char *k;
	json_t *v, *e;
	size_t i;

	bk->size = 100;
	json_object_foreach(doc, k, v) {
		if (strcmp(k, "order_ids") == 0) {
			if (!json_is_array(v) || json_array_size(v) == 0 ||
			    (long long)json_array_size(v) > max)
				return "\"order_ids\" must be an array of 1 to api.max_bulk ids";
			bk->keys = xcalloc(json_array_size(v), sizeof(*bk->keys));
			json_array_foreach(v, i, e) {
				if (!json_is_string(e) || json_string_length(e) == 0 ||
				    json_string_length(e) > 64 ||
				    !api_text_ok(json_string_value(e), json_string_length(e)))
					return "\"order_ids\" must hold order UUIDs or TikTok order ids";
				bk->keys[bk->n++] = xstrdup(json_string_value(e));
			}
		} else if (strcmp(k, "status") == 0) {
			if (!json_is_string(v) || api_index(api_order_statuses, json_string_value(v)) < 0)
				return "\"status\" must be an order status";
			snprintf(bk->status, sizeof(bk->status), "%s", json_string_value(v));
		} else if (strcmp(k, "reason") == 0) {
			if (!api_reason(v, bk->reason, &bk->has_reason))
				return "\"reason\" must be text of at most 255 characters";
		} else if (strcmp(k, "batch_size") == 0) {
			if (!json_is_integer(v) || json_integer_value(v) < 1 || json_integer_value(v) > 1000)
				return "\"batch_size\" must be an integer in 1..1000";
			bk->size = (int)json_integer_value(v);
		} else {
			return "the body has a field this endpoint does not know";
		}
	}
	if (bk->n == 0)
		return "\"order_ids\" is required";
	return bk->status[0] == '\0' ? "\"status\" is required" : NULL;
}

/* keys[from..to) as a PostgreSQL text[] literal, each element quoted. */
static char *
api_text_array(char **keys, int from, int to)
{
	struct evbuffer *b = evbuffer_new();
	char *out;

	evbuffer_add(b, "{", 1);
	for (int i = from; i < to; i++) {
		evbuffer_add(b, i > from ? ",\"" : "\"", i > from ? 2 : 1);
		for (const char *p = keys[i]; *p != '\0'; p++) {
			if (*p == '"' || *p == '\\')
				evbuffer_add(b, "\\", 1);
			evbuffer_add(b, p, 1);
		}
		evbuffer_add(b, "\"", 1);
	}
	evbuffer_add(b, "}", 2);
	out = xstrdup((const char *)evbuffer_pullup(b, -1));
	evbuffer_free(b);
	return out;
}

static void api_bulk_next(struct api_call *c, struct api_bulk *bk);

/* Reply with what was done; the batch is marked done or interrupted. */
static void
api_bulk_reply(struct api_call *c, struct api_bulk *bk, const char *error)
{
	struct evbuffer *out;

	if (error != NULL) {
		log_warn("bulk status change interrupted", "batch=%s done=%lld error=%s", bk->batch_id,
		    bk->processed + bk->failed, log_quote(error));
		httpd_unavailable(c->hr, 1, bk->batch_id[0] == '\0' ? "the batch cannot be started now" :
		    "the batch was interrupted; GET /api/orders/bulk/{batch_id} shows how far it got");
		api_bulk_free(c, bk);
		return;
	}
	out = evbuffer_new();
	evbuffer_add_printf(out, "{\"success\":true,\"processed\":%lld,\"failed\":%lld,"
	    "\"batch_id\":\"%s\",\"errors\":[", bk->processed, bk->failed, bk->batch_id);
	evbuffer_add_buffer(out, bk->errors);
	evbuffer_add(out, "]}", 2);
	httpd_reply(c->hr, 200, "application/json", (const char *)evbuffer_pullup(out, -1),
	    evbuffer_get_length(out));
	evbuffer_free(out);
	api_bulk_free(c, bk);
}

static void
api_on_bulk_finish(struct pg_batch *b, void *arg)
{
	struct api_call *c = arg;
	const char *error = pg_batch_error(b);

	api_bulk_reply(c, c->bulk, error != NULL ? error :
	    c->bulk->interrupted ? "a chunk failed" : NULL);
}

/* Mark the batch finished (state "done" or "interrupted"), then reply. */
static void
api_bulk_finish(struct api_call *c, struct api_bulk *bk, const char *state)
{
	struct pg_batch *b = pg_batch_new(api_on_bulk_finish, c);

	bk->interrupted = strcmp(state, "interrupted") == 0;
	pg_batch_add(b, true, "api_bulk_finish", 3, (const char *[]){ bk->batch_id, c->creator, state });
	if (pg_submit(c->hr->w->pg, b) != PG_OK)
		api_bulk_reply(c, bk, "database unavailable");
}

static void
api_on_bulk_chunk(struct pg_batch *b, void *arg)
{
	struct api_call *c = arg;
	struct api_bulk *bk = c->bulk;
	PGresult *r = pg_batch_result(b, 0);
	const char *errs;

	if (pg_batch_error(b) != NULL || r == NULL || PQntuples(r) != 1) {
		const char *why = pg_batch_error(b) ? pg_batch_error(b) : "unexpected result";

		log_warn("bulk chunk failed", "batch=%s error=%s", bk->batch_id, log_quote(why));
		api_bulk_finish(c, bk, "interrupted");
		return;
	}
	bk->processed += strtoll(PQgetvalue(r, 0, 0), NULL, 10);
	errs = PQgetvalue(r, 0, 1);
	if (strcmp(errs, "[]") != 0) {
		size_t len = strlen(errs);

		if (evbuffer_get_length(bk->errors) > 0)
			evbuffer_add(bk->errors, ",", 1);
		evbuffer_add(bk->errors, errs + 1, len - 2);
	}
	bk->failed = (long long)(bk->next + bk->size < bk->n ? bk->next + bk->size : bk->n) -
	    bk->processed;
	if (!PQgetisnull(r, 0, 2))
		api_cache_forget_list(c->hr->w, PQgetvalue(r, 0, 2));
	bk->next += bk->size;
	api_bulk_next(c, bk);
}

static void
api_bulk_next(struct api_call *c, struct api_bulk *bk)
{
	int to = bk->next + bk->size < bk->n ? bk->next + bk->size : bk->n;
	char *arr, first[24];
	struct pg_batch *b;

	if (bk->next >= bk->n) {
		api_bulk_finish(c, bk, "done");
		return;
	}
	arr = api_text_array(bk->keys, bk->next, to);
	snprintf(first, sizeof(first), "%d", bk->next);
	b = pg_batch_new(api_on_bulk_chunk, c);
	pg_batch_add(b, true, "api_bulk_chunk", 6, (const char *[]){ bk->batch_id, c->creator, arr,
	    first, bk->status, bk->has_reason ? bk->reason : NULL });
	free(arr);
	if (pg_submit(c->hr->w->pg, b) != PG_OK)
		api_bulk_finish(c, bk, "interrupted");
}

static void
api_on_bulk_created(struct pg_batch *b, void *arg)
{
	struct api_call *c = arg;
	struct api_bulk *bk = c->bulk;
	PGresult *r = pg_batch_result(b, 0);

	if (pg_batch_error(b) != NULL || r == NULL || PQntuples(r) != 1) {
		api_bulk_reply(c, bk, pg_batch_error(b) ? pg_batch_error(b) : "unexpected result");
		return;
	}
	snprintf(bk->batch_id, sizeof(bk->batch_id), "%s", PQgetvalue(r, 0, 0));
	api_bulk_next(c, bk);
}

static void
api_bulk_run(struct api_call *c)
{
	struct api_bulk *bk = xcalloc(1, sizeof(*bk));
	json_t *doc = api_body(c->hr);
	const char *bad;
	char size[16], total[16];
	struct pg_batch *b;

	c->bulk = bk;
	bk->errors = evbuffer_new();
	if (doc == NULL) {
		api_bulk_free(c, bk);
		return;
	}
	bad = api_bulk_fields(doc, bk, c->hr->w->cfg->api.max_bulk);
	json_decref(doc);
	if (bad != NULL) {
		httpd_error(c->hr, 400, "invalid_body", "%s", bad);
		api_bulk_free(c, bk);
		return;
	}
	snprintf(size, sizeof(size), "%d", bk->size);
	snprintf(total, sizeof(total), "%d", bk->n);
	b = pg_batch_new(api_on_bulk_created, c);
	pg_batch_add(b, true, "api_bulk_create", 5, (const char *[]){ c->creator, bk->status,
	    bk->has_reason ? bk->reason : NULL, size, total });
	if (pg_submit(c->hr->w->pg, b) != PG_OK)
		api_bulk_reply(c, bk, "database unavailable");
}

void
api_bulk_status(struct httpd_req *hr)
{
	api_begin(hr, xcalloc(1, sizeof(struct api_call)), api_bulk_run);
}

static void
api_on_bulk_get(struct pg_batch *b, void *arg)
{
	struct api_call *c = arg;
	PGresult *r = pg_batch_result(b, 0);

	if (pg_batch_error(b) != NULL || r == NULL)
		httpd_unavailable(c->hr, 1, "the batch cannot be read now");
	else if (PQntuples(r) == 0)
		httpd_error(c->hr, 404, "not_found", "no such batch");
	else
		httpd_reply(c->hr, 200, "application/json", PQgetvalue(r, 0, 0),
		    (size_t)PQgetlength(r, 0, 0));
	free(c);
}

static void
api_bulk_get_run(struct api_call *c)
{
	struct pg_batch *b;

	if (!api_uuid(c->hr->params[0])) {
		httpd_error(c->hr, 404, "not_found", "no such batch");
		free(c);
		return;
	}
	b = pg_batch_new(api_on_bulk_get, c);

	pg_batch_add(b, true, "api_bulk_get", 2, (const char *[]){ c->hr->params[0], c->creator });
	api_submit(c, b);
}

void
api_bulk_get(struct httpd_req *hr)
{
	api_begin(hr, xcalloc(1, sizeof(struct api_call)), api_bulk_get_run);
}

static void
api_prepare_bulk(struct pg_pool *pg)
{
	pg_pool_prepare(pg, "api_bulk_create", api_bulk_create_sql);
	pg_pool_prepare(pg, "api_bulk_chunk", api_bulk_chunk_sql);
	pg_pool_prepare(pg, "api_bulk_finish", api_bulk_finish_sql);
	pg_pool_prepare(pg, "api_bulk_get", api_bulk_get_sql);
}
