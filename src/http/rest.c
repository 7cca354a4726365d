/*
 * rest: the authenticate -> rate limit -> run chain, answers from any
 * worker, and the parsing every dashboard endpoint shares.
 */
#include "config.h"

#include <ctype.h>
#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "orderflow/auth.h"
#include "orderflow/httpd.h"
#include "orderflow/log.h"
#include "orderflow/ostore.h"
#include "orderflow/pg.h"
#include "orderflow/ratelimit.h"
#include "orderflow/rest.h"
#include "orderflow/service.h"
#include "orderflow/worker.h"

void
rest_free(struct rest_call *c)
{
	free(c->path_id);
	free(c->body);
	free(c->retry_after);
	if (c->free != NULL)
		c->free(c);
	else
		free(c);
}

/* ---- the chain ----------------------------------------------------------- */

static void
rest_on_limit(const struct rl_result *r, void *arg)
{
	struct rest_call *c = arg;

	if (!r->allowed) {
		ratelimit_reply_429(c->hr, r);
		rest_free(c);
		return;
	}
	ratelimit_headers(c->hr, r);
	c->run(c);
}

static void
rest_on_auth(struct httpd_req *hr, const struct auth_result *a, void *arg)
{
	struct rest_call *c = arg;
	char subject[64];

	if (hr == NULL || !a->ok) {	/* auth answered the request */
		rest_free(c);
		return;
	}
	snprintf(c->creator, sizeof(c->creator), "%s", a->creator_id);
	snprintf(subject, sizeof(subject), "%c:%s", a->kind == AUTH_KIND_JWT ? 'c' : 'k', a->subject);
	if (!ratelimit_check(hr->w->svc[SERVICE_RATELIMIT], subject, rest_on_limit, c)) {
		httpd_error(hr, 500, "internal", "cannot rate-limit this caller");
		rest_free(c);
	}
}

void
rest_begin(struct httpd_req *hr, struct rest_call *c, rest_fn *run)
{
	c->hr = hr;
	c->home = hr->w;
	c->run = run;
	if (hr->params[0] != NULL && c->path_id == NULL)
		c->path_id = xstrdup(hr->params[0]);
	auth_request(hr->w->svc[SERVICE_AUTH], hr, rest_on_auth, c);
}

void
rest_submit(struct rest_call *c, struct pg_batch *b)
{
	if (pg_submit(worker_self()->pg, b) != PG_OK)
		rest_unavailable(c, "database unavailable");
}

/* ---- answers ------------------------------------------------------------ */

/* On home: send what another worker answered. */
static void
rest_on_answer(struct worker *w, void *arg)
{
	struct rest_call *c = arg;
	struct evkeyvalq *h = evhttp_request_get_output_headers(c->hr->req);

	if (c->retry_after != NULL)
		evhttp_add_header(h, "Retry-After", c->retry_after);
	httpd_reply(c->hr, c->status, "application/json", c->body, strlen(c->body));
	rest_free(c);
}

/* Home ended before the answer came back (shutdown): nothing to send it on. */
static void
rest_on_answer_dropped(struct worker *w, void *arg)
{
	struct rest_call *c = arg;

	httpd_abandon(c->hr);
	rest_free(c);
}

/* Hand an answer to home; the body is taken. */
static void
rest_answer_home(struct rest_call *c, int status, char *body, const char *retry_after)
{
	free(c->body);
	c->status = status;
	c->body = body;
	c->retry_after = retry_after != NULL ? xstrdup(retry_after) : NULL;
	worker_post_owned(c->home, rest_on_answer, rest_on_answer_dropped, c);
}

void
rest_reply(struct rest_call *c, int status, const char *body, size_t len)
{
	if (worker_self() != c->home) {
		rest_answer_home(c, status, xstrndup(body, len), NULL);
		return;
	}
	httpd_reply(c->hr, status, "application/json", body, len);
	rest_free(c);
}

static void
rest_verror(struct rest_call *c, int status, const char *code, const char *retry_after,
    const char *fmt, va_list ap)
{
	char *message = xvasprintf(fmt, ap);

	if (worker_self() != c->home) {
		rest_answer_home(c, status, httpd_error_json(code, message), retry_after);
	} else {
		if (retry_after != NULL)
			evhttp_add_header(evhttp_request_get_output_headers(c->hr->req), "Retry-After",
			    retry_after);
		httpd_error(c->hr, status, code, "%s", message);
		rest_free(c);
	}
	free(message);
}

void
rest_error(struct rest_call *c, int status, const char *code, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	rest_verror(c, status, code, NULL, fmt, ap);
	va_end(ap);
}

/* Goes through rest_verror so the format stays a literal. */
static void
rest_unavailable_fmt(struct rest_call *c, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	rest_verror(c, 503, "unavailable", "1", fmt, ap);
	va_end(ap);
}

void
rest_unavailable(struct rest_call *c, const char *why)
{
	rest_unavailable_fmt(c, "%s", why);
}

/* SQLSTATE classes that pass: the connection, a rollback, resources, an operator. */
static bool
rest_db_transient(const char *state)
{
	static const char *const classes[] = { "08", "40", "53", "55", "57", "58" };

	if (state == NULL || state[0] == '\0')
		return true;	/* no answer at all: down, timed out */
	for (size_t i = 0; i < NELEM(classes); i++)
		if (strncmp(state, classes[i], 2) == 0)
			return true;
	return false;
}

void
rest_db_error(struct rest_call *c, const char *sqlstate, const char *why)
{
	/* Told to retry, a client would send the same refused request forever. */
	if (rest_db_transient(sqlstate))
		rest_unavailable(c, why);
	else if (strncmp(sqlstate, "23", 2) == 0)
		rest_error(c, 409, "conflict", "the database refused the change: a constraint "
		    "(SQLSTATE %s) does not allow it", sqlstate);
	else if (strncmp(sqlstate, "22", 2) == 0)
		rest_error(c, 400, "invalid_parameter", "a value does not fit the database "
		    "(SQLSTATE %s)", sqlstate);
	else
		rest_error(c, 500, "internal", "the database failed the request (SQLSTATE %s); "
		    "trying again will not help", sqlstate);
}

void
rest_db_failed(struct rest_call *c, const struct pg_batch *b, const char *why)
{
	rest_db_error(c, b != NULL ? pg_batch_sqlstate(b) : NULL, why);
}

/* The owner ended before the step ran: only at shutdown, after home ended too. */
static void
rest_on_owner_dropped(struct worker *w, void *arg)
{
	rest_on_answer_dropped(w, arg);
}

/* On the owner: run the step the call was handed over with. */
static void
rest_on_owner_run(struct worker *w, void *arg)
{
	struct rest_call *c = arg;

	c->run(c);
}

void
rest_on_owner(struct rest_call *c, const char *tiktok_id, rest_fn *fn)
{
	c->run = fn;
	ostore_post(worker_self(), tiktok_id, rest_on_owner_run, rest_on_owner_dropped, c);
}

/* ---- request parsing ---------------------------------------------------- */

json_t *
rest_body(struct rest_call *c)
{
	struct httpd_req *hr = c->hr;
	struct evbuffer *in = evhttp_request_get_input_buffer(hr->req);
	size_t len = evbuffer_get_length(in);
	json_error_t jerr;
	json_t *doc;

	if (!httpd_is_json(hr)) {
		rest_error(c, 415, "unsupported_media_type", "Content-Type must be application/json");
		return NULL;
	}
	doc = json_loadb((const char *)evbuffer_pullup(in, -1), len, JSON_REJECT_DUPLICATES, &jerr);
	if (doc == NULL || !json_is_object(doc)) {
		rest_error(c, 400, "invalid_body", "the body must be a JSON object%s%.80s",
		    doc == NULL ? ": " : "", doc == NULL ? jerr.text : "");
		json_decref(doc);
		return NULL;
	}
	return doc;
}

long long
rest_if_match(struct rest_call *c)
{
	const char *h = evhttp_find_header(evhttp_request_get_input_headers(c->hr->req), "If-Match");
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
	return rest_number(buf, 2147483647LL);
}

long long
rest_if_match_new(struct rest_call *c)
{
	const char *h = evhttp_find_header(evhttp_request_get_input_headers(c->hr->req), "If-Match");

	if (h != NULL && (strcmp(h, "0") == 0 || strcmp(h, "\"0\"") == 0 ||
	    strcmp(h, "W/\"0\"") == 0))
		return REST_IF_NONE;
	return rest_if_match(c);
}

bool
rest_query(struct httpd_req *hr, rest_param_fn *fn, void *arg)
{
	const char *q = evhttp_uri_get_query(evhttp_request_get_evhttp_uri(hr->req)), *bad = NULL;
	struct evkeyvalq kv;
	struct evkeyval *e;

	TAILQ_INIT(&kv);
	if (q != NULL && (strlen(q) > 4096 || evhttp_parse_query_str(q, &kv) != 0)) {
		httpd_error(hr, 400, "invalid_query", "the query string cannot be parsed");
		return false;
	}
	TAILQ_FOREACH(e, &kv, next) {
		if ((bad = fn(arg, e->key, e->value)) != NULL) {
			httpd_error(hr, 400, "invalid_parameter", "parameter \"%.40s\" %s", e->key, bad);
			break;
		}
	}
	evhttp_clear_headers(&kv);
	return bad == NULL;
}

const char *
rest_unknown_field(const char *key)
{
	/* Read at once by the caller's answer, on this thread: no allocation to free. */
	static _Thread_local char msg[128];

	snprintf(msg, sizeof(msg), "the body has a field this endpoint does not know: \"%.40s\"",
	    key);
	return msg;
}

bool
rest_no_query(struct httpd_req *hr)
{
	const char *q = evhttp_uri_get_query(evhttp_request_get_evhttp_uri(hr->req));

	if (q != NULL && q[0] != '\0') {
		httpd_error(hr, 400, "invalid_parameter", "this endpoint takes no query parameters");
		return false;
	}
	return true;
}

bool
rest_uuid(const char *s)
{
	char lower[JWT_UUID_LEN + 1];

	return jwt_uuid_parse(s, strlen(s), lower);
}

int
rest_index(const char *const *names, const char *v)
{
	for (int i = 0; names[i] != NULL; i++)
		if (strcmp(names[i], v) == 0)
			return i;
	return -1;
}

long long
rest_number(const char *s, long long max)
{
	char *end;
	long long v;

	if (s[0] < '0' || s[0] > '9' || strlen(s) > 12)
		return -1;
	v = strtoll(s, &end, 10);
	return *end != '\0' || v < 1 || v > max ? -1 : v;
}

bool
rest_enum_list(const char *v, const char *const *names, unsigned *mask)
{
	char buf[256], *save = NULL, *tok;
	bool any = false;

	if (v[0] == '\0' || strlen(v) >= sizeof(buf) || v[0] == ',' || v[strlen(v) - 1] == ',' ||
	    strstr(v, ",,") != NULL)
		return false;
	snprintf(buf, sizeof(buf), "%s", v);
	for (tok = strtok_r(buf, ",", &save); tok != NULL; tok = strtok_r(NULL, ",", &save)) {
		int i = rest_index(names, tok);

		if (i < 0)
			return false;
		*mask |= 1u << i;
		any = true;
	}
	return any;
}

void
rest_enum_literal(unsigned mask, const char *const *names, char *out, size_t size)
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

bool
rest_text_ok(const char *s, size_t n)
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

size_t
rest_chars(const char *s)
{
	size_t n = 0;

	for (; *s != '\0'; s++)
		n += ((unsigned char)*s >> 6) != 2;
	return n;
}

static bool
rest_digits(const char *s, int n)
{
	for (int i = 0; i < n; i++)
		if (s[i] < '0' || s[i] > '9')
			return false;
	return true;
}

/* The time of day and zone after the date: "THH:MM[:SS[.f]](Z|+HH:MM)". */
static bool
rest_iso_time(const char *p, struct tm *tm, long long *frac, long long *off)
{
	int fd = 0;

	if ((*p != 'T' && *p != 't' && *p != ' ') || !rest_digits(p + 1, 2) || p[3] != ':' ||
	    !rest_digits(p + 4, 2))
		return false;
	tm->tm_hour = atoi(p + 1);
	tm->tm_min = atoi(p + 4);
	p += 6;
	if (*p == ':') {
		if (!rest_digits(p + 1, 2))
			return false;
		tm->tm_sec = atoi(p + 1);
		p += 3;
		if (*p == '.') {
			for (p++; *p >= '0' && *p <= '9'; p++, fd++)
				if (fd < 6)
					*frac = *frac * 10 + (*p - '0');
			if (fd == 0 || fd > 9)
				return false;
			for (int i = fd; i < 6; i++)
				*frac *= 10;
		}
	}
	if ((*p == 'Z' || *p == 'z') && p[1] == '\0')
		return true;
	if ((*p == '+' || *p == '-') && rest_digits(p + 1, 2) && p[3] == ':' &&
	    rest_digits(p + 4, 2) && p[6] == '\0' && atoi(p + 1) <= 23 && atoi(p + 4) <= 59) {
		*off = (atoi(p + 1) * 60 + atoi(p + 4)) * 60LL * (*p == '+' ? 1 : -1);
		return true;
	}
	return false;
}

bool
rest_iso8601(const char *s, long long *us, bool *date_only)
{
	struct tm tm = { 0 };
	long long frac = 0, off = 0;
	size_t n = strlen(s);
	int mday;
	time_t t;

	if (n < 10 || !rest_digits(s, 4) || s[4] != '-' || !rest_digits(s + 5, 2) || s[7] != '-' ||
	    !rest_digits(s + 8, 2))
		return false;
	tm.tm_year = atoi(s) - 1900;
	tm.tm_mon = atoi(s + 5) - 1;
	tm.tm_mday = atoi(s + 8);
	*date_only = n == 10;
	if (!*date_only && !rest_iso_time(s + 10, &tm, &frac, &off))
		return false;
	if (tm.tm_year < 70 || tm.tm_year > 1100 || tm.tm_mon > 11 || tm.tm_mday < 1 ||
	    tm.tm_hour > 23 || tm.tm_min > 59 || tm.tm_sec > 59)
		return false;
	mday = tm.tm_mday;
	t = timegm(&tm);	/* normalizes 2024-02-31 into March... */
	if (tm.tm_mday != mday)	/* ...which is refused instead */
		return false;
	*us = ((long long)t - off) * 1000000LL + frac;
	return true;
}

bool
rest_reason(json_t *v, char out[REST_REASON_SIZE], bool *has)
{
	if (json_is_null(v))
		return true;
	if (!json_is_string(v) || json_string_length(v) >= REST_REASON_SIZE ||
	    !rest_text_ok(json_string_value(v), json_string_length(v)) ||
	    rest_chars(json_string_value(v)) > 255)
		return false;
	memcpy(out, json_string_value(v), json_string_length(v) + 1);
	*has = true;
	return true;
}

char *
rest_text_array(char *const *keys, int from, int to)
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

bool
rest_order_id(struct httpd_req *hr, bool *by_uuid)
{
	const char *id = hr->params[0];
	size_t n = strlen(id);

	if (n == 0 || n > 64 || !rest_text_ok(id, n)) {
		httpd_error(hr, 400, "invalid_parameter", "the order id must be a UUID or a TikTok order id");
		return false;
	}
	*by_uuid = rest_uuid(id);
	for (char *p = hr->params[0]; *by_uuid && *p != '\0'; p++)
		*p = (char)tolower((unsigned char)*p);	/* one cache key per order */
	return true;
}
