/*
 * wf_cond: conditions over an order's facts.
 *
 * Owns the table of fields a condition may test (their types and the
 * operators each type takes), the parser that turns a JSON condition into
 * a tree of nodes after checking every part of it (naming the JSON path of
 * what is wrong), and the evaluator.  Money is held and compared in
 * integer cents.  A parsed condition is immutable: evaluating it from many
 * threads at once is safe.
 */
#include "config.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "orderflow/util.h"
#include "orderflow/wf_cond.h"

#define WF_COND_MAX_KIDS	16	/* conditions of one all/any */
#define WF_COND_PATH_MAX	256	/* bytes of a path, as struct wf_err holds */
#define WF_COND_MONEY_DIGITS	10	/* integer digits of an amount: NUMERIC(12,2) */

/* What one node of a condition is. */
enum wf_cond_kind {
	WF_COND_ALL,	/* every kid holds */
	WF_COND_ANY,	/* at least one kid holds */
	WF_COND_NOT,	/* its one kid does not hold */
	WF_COND_CMP,	/* field op value */
};

/* The type of a field: it decides the operators and the values. */
enum wf_cond_type {
	WF_COND_T_MONEY,	/* decimal amount, compared in cents */
	WF_COND_T_INT,		/* JSON integer */
	WF_COND_T_STR,		/* one string */
	WF_COND_T_BOOL,		/* true or false */
	WF_COND_T_STRS,		/* an array of strings (tags, skus) */
};

/* The operators, in the order of wf_cond_op_names. */
enum wf_cond_op {
	WF_COND_EQ,		/* equal */
	WF_COND_NE,		/* not equal */
	WF_COND_LT,		/* less than */
	WF_COND_LE,		/* less or equal */
	WF_COND_GT,		/* greater than */
	WF_COND_GE,		/* greater or equal */
	WF_COND_IN,		/* the string is one of the values */
	WF_COND_NOT_IN,		/* the string is none of the values */
	WF_COND_CONTAINS,	/* the list holds the value */
	WF_COND_CONTAINS_ANY,	/* the list holds at least one of the values */
	WF_COND_CONTAINS_ALL,	/* the list holds every one of the values */
	WF_COND_NOT_CONTAINS,	/* the list does not hold the value */
	WF_COND_OP_COUNT
};

/* The operators as written in conditions, indexed by enum wf_cond_op. */
static const char *const wf_cond_op_names[WF_COND_OP_COUNT] = {
	"eq", "ne", "lt", "le", "gt", "ge", "in", "not_in",
	"contains", "contains_any", "contains_all", "not_contains",
};

#define WF_COND_B(op) (1u << (op))
/* The operators that take an array of strings as their value. */
#define WF_COND_LIST_OPS (WF_COND_B(WF_COND_IN) | WF_COND_B(WF_COND_NOT_IN) | \
	WF_COND_B(WF_COND_CONTAINS_ANY) | WF_COND_B(WF_COND_CONTAINS_ALL))
#define WF_COND_ORDER_OPS (WF_COND_B(WF_COND_EQ) | WF_COND_B(WF_COND_NE) | \
	WF_COND_B(WF_COND_LT) | WF_COND_B(WF_COND_LE) | WF_COND_B(WF_COND_GT) | \
	WF_COND_B(WF_COND_GE))

/* Per type: its name for messages and the operators it takes. */
static const struct {
	const char	*name;		/* as said to a client */
	unsigned	ops;		/* WF_COND_B(op) of each operator */
} wf_cond_types[] = {
	[WF_COND_T_MONEY] = { "money", WF_COND_ORDER_OPS },
	[WF_COND_T_INT] = { "integer", WF_COND_ORDER_OPS },
	[WF_COND_T_STR] = { "string", WF_COND_B(WF_COND_EQ) | WF_COND_B(WF_COND_NE) |
	    WF_COND_B(WF_COND_IN) | WF_COND_B(WF_COND_NOT_IN) },
	[WF_COND_T_BOOL] = { "boolean", WF_COND_B(WF_COND_EQ) | WF_COND_B(WF_COND_NE) },
	[WF_COND_T_STRS] = { "string list", WF_COND_B(WF_COND_CONTAINS) |
	    WF_COND_B(WF_COND_CONTAINS_ANY) | WF_COND_B(WF_COND_CONTAINS_ALL) |
	    WF_COND_B(WF_COND_NOT_CONTAINS) },
};

/* The facts a condition may test. */
static const struct {
	const char		*name;	/* the key in the condition and in the facts */
	enum wf_cond_type	type;	/* what it holds */
} wf_cond_fields[] = {
	{ "total_amount", WF_COND_T_MONEY },
	{ "item_count", WF_COND_T_INT },
	{ "priority_level", WF_COND_T_INT },
	{ "currency", WF_COND_T_STR },
	{ "payment_status", WF_COND_T_STR },
	{ "region", WF_COND_T_STR },
	{ "tiktok_status", WF_COND_T_STR },
	{ "shipping_method", WF_COND_T_STR },
	{ "order_source", WF_COND_T_STR },
	{ "is_on_hold", WF_COND_T_BOOL },
	{ "buyer_request_cancel", WF_COND_T_BOOL },
	{ "tags", WF_COND_T_STRS },
	{ "skus", WF_COND_T_STRS },
};

/* One node of a parsed condition. */
struct wf_cond {
	enum wf_cond_kind	kind;	/* all, any, not or a comparison */
	int			nkids;	/* all/any: 1..16; not: 1; comparison: 0 */
	struct wf_cond		**kids;	/* nkids of them, owned */
	const char		*field;	/* comparison: the facts key (static) */
	enum wf_cond_type	type;	/* comparison: the field's type */
	enum wf_cond_op		op;	/* comparison: the operator */
	long long		num;	/* money in cents, an integer, or a boolean 0/1 */
	int			nstrs;	/* string values: 1 for a single one */
	char			**strs;	/* nstrs of them, owned */
};

/* What one parse shares across its recursion. */
struct wf_cond_ctx {
	int		nodes;	/* nodes made so far */
	struct wf_err	*err;	/* where the first error goes */
};

static struct wf_cond *wf_cond_node(json_t *v, const char *path, int depth,
    struct wf_cond_ctx *ctx);

/* Paths are copied, never used as formats: they hold the client's keys. */
void *
wf_err_set(struct wf_err *err, const char *path, const char *fmt, ...)
{
	va_list ap;

	if (err == NULL)
		return NULL;
	snprintf(err->path, sizeof(err->path), "%s", path);
	va_start(ap, fmt);
	vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
	va_end(ap);
	return NULL;
}

void
wf_err_path(char *buf, size_t size, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, size, fmt, ap);
	va_end(ap);
}

bool
wf_err_fail(struct wf_err *err, const char *path, const char *fmt, ...)
{
	char msg[sizeof(err->msg)];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	wf_err_set(err, path, "%s", msg);
	return false;
}

void
wf_err_key_path(char *buf, size_t size, const char *parent, const char *key)
{
	size_t len, plain = strspn(key, "abcdefghijklmnopqrstuvwxyz"
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_");

	if (key[0] != '\0' && plain == strlen(key) && !(key[0] >= '0' && key[0] <= '9')) {
		snprintf(buf, size, "%s.%s", parent, key);
		return;
	}
	len = (size_t)snprintf(buf, size, "%s[\"", parent);
	if (len < size) {
		util_json_escape(buf + len, size - len, key);
		len += strlen(buf + len);
	}
	if (len < size)
		snprintf(buf + len, size - len, "\"]");
}

/* A decimal string "12", "12.5" or "12.50" (10 integer digits at most) in cents. */
static bool
wf_cond_decimal(const char *s, long long *cents)
{
	size_t intlen = strspn(s, "0123456789"), fraclen = 0;
	long long v = 0;

	if (intlen == 0 || intlen > WF_COND_MONEY_DIGITS)
		return false;
	if (s[intlen] == '.') {
		fraclen = strspn(s + intlen + 1, "0123456789");
		if (fraclen == 0 || fraclen > 2)
			return false;
	}
	if (s[intlen + (fraclen > 0 ? fraclen + 1 : 0)] != '\0')
		return false;
	for (size_t i = 0; i < intlen; i++)
		v = v * 10 + (s[i] - '0');
	for (size_t i = 0; i < 2; i++)
		v = v * 10 + (i < fraclen ? s[intlen + 1 + i] - '0' : 0);
	*cents = v;
	return true;
}

/*
 * An amount in cents: a decimal string, a JSON integer, or a JSON real
 * with at most 2 decimals (the real printed with 2 decimals reads back as
 * the very same double), never negative.
 */
static bool
wf_cond_money(json_t *v, long long *cents)
{
	char buf[64];
	double d;

	if (json_is_string(v))
		return strlen(json_string_value(v)) == json_string_length(v) &&
		    wf_cond_decimal(json_string_value(v), cents);
	if (json_is_integer(v)) {
		snprintf(buf, sizeof(buf), "%lld", (long long)json_integer_value(v));
		return wf_cond_decimal(buf, cents);
	}
	if (!json_is_real(v) || (d = json_real_value(v)) < 0 || d >= 1e10)
		return false;
	snprintf(buf, sizeof(buf), "%.2f", d);
	return strtod(buf, NULL) == d && wf_cond_decimal(buf, cents);
}

/* Refuse the first key of v not in keys (NULL-terminated), naming its path. */
static bool
wf_cond_keys_ok(json_t *v, const char *const *keys, const char *path, struct wf_err *err)
{
	static const char *const all[] = { "all", "any", "not", "field", "op", "value" };
	char kpath[WF_COND_PATH_MAX];
	const char *key;
	json_t *val;
	size_t i;

	json_object_foreach(v, key, val) {
		for (i = 0; keys[i] != NULL && strcmp(keys[i], key) != 0; i++)
			;
		if (keys[i] != NULL)
			continue;
		wf_err_key_path(kpath, sizeof(kpath), path, key);
		for (i = 0; i < NELEM(all) && strcmp(all[i], key) != 0; i++)
			;
		if (i < NELEM(all))
			return wf_err_fail(err, kpath, "\"%s\" cannot be combined with \"%s\"",
			    key, keys[0]);
		return wf_err_fail(err, kpath, "unknown field");
	}
	return true;
}

/* A string value: at most WF_COND_MAX_STR bytes, no NUL; a copy, or NULL with err. */
static char *
wf_cond_str(json_t *v, const char *path, struct wf_err *err)
{
	if (!json_is_string(v))
		return wf_err_set(err, path, "must be a string");
	if (json_string_length(v) > WF_COND_MAX_STR)
		return wf_err_set(err, path, "a string value has at most %d bytes",
		    WF_COND_MAX_STR);
	if (strlen(json_string_value(v)) != json_string_length(v))
		return wf_err_set(err, path, "a string value must not hold NUL");
	return xstrdup(json_string_value(v));
}

/* The string value(s) of c: one string, or an array of 1..WF_COND_MAX_LIST. */
static bool
wf_cond_strings(struct wf_cond *c, json_t *v, bool list, const char *path,
    struct wf_err *err)
{
	char epath[WF_COND_PATH_MAX];
	size_t i;
	json_t *e;

	if (!list) {
		c->strs = xcalloc(1, sizeof(*c->strs));
		c->nstrs = 1;
		return (c->strs[0] = wf_cond_str(v, path, err)) != NULL;
	}
	if (!json_is_array(v) || json_array_size(v) == 0 ||
	    json_array_size(v) > WF_COND_MAX_LIST)
		return wf_err_fail(err, path, "\"%s\" takes an array of 1 to %d strings",
		    wf_cond_op_names[c->op], WF_COND_MAX_LIST);
	c->strs = xcalloc(json_array_size(v), sizeof(*c->strs));
	json_array_foreach(v, i, e) {
		wf_err_path(epath, sizeof(epath), "%s[%zu]", path, i);
		if ((c->strs[i] = wf_cond_str(e, epath, err)) == NULL)
			return false;
		c->nstrs++;
	}
	return true;
}

/* The value of comparison c, checked against its field's type and operator. */
static bool
wf_cond_value(struct wf_cond *c, json_t *v, const char *path, struct wf_err *err)
{
	bool list = (WF_COND_LIST_OPS & WF_COND_B(c->op)) != 0;

	switch (c->type) {
	case WF_COND_T_MONEY:
		if (!wf_cond_money(v, &c->num))
			return wf_err_fail(err, path, "must be an amount >= 0: a number or a "
			    "decimal string with at most 2 decimals and %d integer digits",
			    WF_COND_MONEY_DIGITS);
		return true;
	case WF_COND_T_INT:
		if (!json_is_integer(v))
			return wf_err_fail(err, path, "must be an integer");
		c->num = json_integer_value(v);
		return true;
	case WF_COND_T_BOOL:
		if (!json_is_boolean(v))
			return wf_err_fail(err, path, "must be true or false");
		c->num = json_is_true(v);
		return true;
	case WF_COND_T_STR:
	case WF_COND_T_STRS:
		break;
	}
	return wf_cond_strings(c, v, list, path, err);
}

/* The index of a name in names[n], or -1. */
static int
wf_cond_lookup(const char *const *names, int n, const char *name)
{
	for (int i = 0; i < n; i++)
		if (strcmp(names[i], name) == 0)
			return i;
	return -1;
}

/* The field of c (a comparison): a known one, recorded with its type. */
static bool
wf_cond_field(struct wf_cond *c, json_t *v, const char *path, struct wf_err *err)
{
	char fpath[WF_COND_PATH_MAX];
	const char *name = json_string_value(json_object_get(v, "field"));

	wf_err_path(fpath, sizeof(fpath), "%s.field", path);
	if (json_object_get(v, "field") == NULL)
		return wf_err_fail(err, path, "a condition needs \"all\", \"any\", \"not\" "
		    "or \"field\"");
	if (name == NULL)
		return wf_err_fail(err, fpath, "must be a string (a field name)");
	for (size_t i = 0; i < NELEM(wf_cond_fields); i++) {
		if (strcmp(wf_cond_fields[i].name, name) == 0) {
			c->field = wf_cond_fields[i].name;
			c->type = wf_cond_fields[i].type;
			return true;
		}
	}
	return wf_err_fail(err, fpath, "unknown field \"%.64s\"", name);
}

/* A comparison {"field", "op", "value"} into c. */
static bool
wf_cond_cmp(struct wf_cond *c, json_t *v, const char *path, struct wf_err *err)
{
	static const char *const keys[] = { "field", "op", "value", NULL };
	char opath[WF_COND_PATH_MAX], vpath[WF_COND_PATH_MAX];
	const char *op = json_string_value(json_object_get(v, "op"));
	int i;

	if (!wf_cond_keys_ok(v, keys, path, err) || !wf_cond_field(c, v, path, err))
		return false;
	wf_err_path(opath, sizeof(opath), "%s.op", path);
	wf_err_path(vpath, sizeof(vpath), "%s.value", path);
	if (json_object_get(v, "op") == NULL)
		return wf_err_fail(err, path, "missing \"op\"");
	if (op == NULL)
		return wf_err_fail(err, opath, "must be a string (an operator)");
	if ((i = wf_cond_lookup(wf_cond_op_names, WF_COND_OP_COUNT, op)) < 0)
		return wf_err_fail(err, opath, "unknown operator \"%.32s\"", op);
	c->op = (enum wf_cond_op)i;
	if ((wf_cond_types[c->type].ops & WF_COND_B(c->op)) == 0)
		return wf_err_fail(err, opath, "operator \"%s\" does not apply to %s (a %s "
		    "field)", op, c->field, wf_cond_types[c->type].name);
	if (json_object_get(v, "value") == NULL)
		return wf_err_fail(err, path, "missing \"value\"");
	return wf_cond_value(c, json_object_get(v, "value"), vpath, err);
}

/* The kids of an all/any ("key" names which) into c. */
static bool
wf_cond_group(struct wf_cond *c, json_t *v, const char *key, const char *path, int depth,
    struct wf_cond_ctx *ctx)
{
	const char *const keys[] = { key, NULL };
	char kpath[WF_COND_PATH_MAX];
	json_t *kids = json_object_get(v, key), *kid;
	size_t i;

	if (!wf_cond_keys_ok(v, keys, path, ctx->err))
		return false;
	wf_err_path(kpath, sizeof(kpath), "%s.%s", path, key);
	if (!json_is_array(kids) || json_array_size(kids) == 0 ||
	    json_array_size(kids) > WF_COND_MAX_KIDS)
		return wf_err_fail(ctx->err, kpath, "\"%s\" takes an array of 1 to %d "
		    "conditions", key, WF_COND_MAX_KIDS);
	c->kids = xcalloc(json_array_size(kids), sizeof(*c->kids));
	json_array_foreach(kids, i, kid) {
		wf_err_path(kpath, sizeof(kpath), "%s.%s[%zu]", path, key, i);
		if ((c->kids[i] = wf_cond_node(kid, kpath, depth, ctx)) == NULL)
			return false;
		c->nkids++;
	}
	return true;
}

/* The body of node c, whose kind is already set. */
static bool
wf_cond_body(struct wf_cond *c, json_t *v, const char *path, int depth,
    struct wf_cond_ctx *ctx)
{
	static const char *const not_keys[] = { "not", NULL };
	char kpath[WF_COND_PATH_MAX];

	if (c->kind == WF_COND_CMP)
		return wf_cond_cmp(c, v, path, ctx->err);
	if (depth > WF_COND_MAX_DEPTH)
		return wf_err_fail(ctx->err, path, "conditions nest at most %d levels deep",
		    WF_COND_MAX_DEPTH);
	if (c->kind != WF_COND_NOT)
		return wf_cond_group(c, v, c->kind == WF_COND_ALL ? "all" : "any", path, depth,
		    ctx);
	if (!wf_cond_keys_ok(v, not_keys, path, ctx->err))
		return false;
	wf_err_path(kpath, sizeof(kpath), "%s.not", path);
	c->kids = xcalloc(1, sizeof(*c->kids));
	if ((c->kids[0] = wf_cond_node(json_object_get(v, "not"), kpath, depth, ctx)) == NULL)
		return false;
	c->nkids = 1;
	return true;
}

/* One node at path; depth counts the all/any/not nodes above it. */
static struct wf_cond *
wf_cond_node(json_t *v, const char *path, int depth, struct wf_cond_ctx *ctx)
{
	struct wf_cond *c;

	if (!json_is_object(v))
		return wf_err_set(ctx->err, path, "a condition must be an object");
	if (++ctx->nodes > WF_COND_MAX_NODES)
		return wf_err_set(ctx->err, path, "a condition has at most %d nodes",
		    WF_COND_MAX_NODES);
	c = xcalloc(1, sizeof(*c));
	if (json_object_get(v, "all") != NULL)
		c->kind = WF_COND_ALL;
	else if (json_object_get(v, "any") != NULL)
		c->kind = WF_COND_ANY;
	else if (json_object_get(v, "not") != NULL)
		c->kind = WF_COND_NOT;
	else
		c->kind = WF_COND_CMP;
	if (!wf_cond_body(c, v, path, depth + (c->kind != WF_COND_CMP), ctx)) {
		wf_cond_free(c);
		return NULL;
	}
	return c;
}

/* The root of a condition is at depth 0 and has made no node yet. */
struct wf_cond *
wf_cond_parse(json_t *v, const char *path, struct wf_err *err)
{
	struct wf_cond_ctx ctx = { 0, err };

	return wf_cond_node(v, path, 0, &ctx);
}

/* Whether array a holds the string s. */
static bool
wf_cond_has(json_t *a, const char *s)
{
	size_t i;
	json_t *e;

	json_array_foreach(a, i, e)
		if (json_is_string(e) && strcmp(json_string_value(e), s) == 0)
			return true;
	return false;
}

/* x op y for the ordering operators. */
static bool
wf_cond_order(enum wf_cond_op op, long long x, long long y)
{
	switch (op) {
	case WF_COND_EQ:
		return x == y;
	case WF_COND_NE:
		return x != y;
	case WF_COND_LT:
		return x < y;
	case WF_COND_LE:
		return x <= y;
	case WF_COND_GT:
		return x > y;
	case WF_COND_GE:
		return x >= y;
	default:
		return false;
	}
}

/* A string fact s against the values of c (eq/ne are in/not_in of one value). */
static bool
wf_cond_eval_str(const struct wf_cond *c, const char *s)
{
	bool in = false;

	for (int i = 0; i < c->nstrs && !in; i++)
		in = strcmp(c->strs[i], s) == 0;
	return c->op == WF_COND_EQ || c->op == WF_COND_IN ? in : !in;
}

/* A list fact a against the values of c. */
static bool
wf_cond_eval_strs(const struct wf_cond *c, json_t *a)
{
	int found = 0;

	for (int i = 0; i < c->nstrs; i++)
		found += wf_cond_has(a, c->strs[i]);
	switch (c->op) {
	case WF_COND_CONTAINS:
	case WF_COND_CONTAINS_ALL:
		return found == c->nstrs;
	case WF_COND_CONTAINS_ANY:
		return found > 0;
	default:
		return found == 0;
	}
}

/* A comparison against the fact v; a missing or mistyped fact makes it false. */
static bool
wf_cond_eval_cmp(const struct wf_cond *c, json_t *v)
{
	long long cents;

	switch (c->type) {
	case WF_COND_T_MONEY:
		return wf_cond_money(v, &cents) && wf_cond_order(c->op, cents, c->num);
	case WF_COND_T_INT:
		return json_is_integer(v) && wf_cond_order(c->op, json_integer_value(v), c->num);
	case WF_COND_T_BOOL:
		return json_is_boolean(v) && wf_cond_order(c->op, json_is_true(v), c->num);
	case WF_COND_T_STR:
		return json_is_string(v) && wf_cond_eval_str(c, json_string_value(v));
	case WF_COND_T_STRS:
		return json_is_array(v) && wf_cond_eval_strs(c, v);
	}
	return false;
}

/* NULL holds, like the absent "if" it stands for. */
bool
wf_cond_eval(const struct wf_cond *c, json_t *facts)
{
	int i;

	if (c == NULL)
		return true;
	switch (c->kind) {
	case WF_COND_ALL:
		for (i = 0; i < c->nkids; i++)
			if (!wf_cond_eval(c->kids[i], facts))
				return false;
		return true;
	case WF_COND_ANY:
		for (i = 0; i < c->nkids; i++)
			if (wf_cond_eval(c->kids[i], facts))
				return true;
		return false;
	case WF_COND_NOT:
		return !wf_cond_eval(c->kids[0], facts);
	case WF_COND_CMP:
		break;
	}
	return wf_cond_eval_cmp(c, json_object_get(facts, c->field));
}

/* Free c and everything below it; NULL is fine. */
void
wf_cond_free(struct wf_cond *c)
{
	if (c == NULL)
		return;
	for (int i = 0; i < c->nkids; i++)
		wf_cond_free(c->kids[i]);
	free(c->kids);
	for (int i = 0; i < c->nstrs; i++)
		free(c->strs[i]);
	free(c->strs);
	free(c);
}
