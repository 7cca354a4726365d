/*
 * httpd: routing, limits and replies on top of one worker's evhttp.
 *
 * The route table below is the whole HTTP surface: a path pattern
 * ({name} matches one segment), the methods it takes, and its handler.
 * A known path with another method is 405 with Allow; anything else 404.
 */
#include "config.h"

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <event2/listener.h>
#include <event2/util.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "orderflow/admin.h"
#include "orderflow/connect.h"
#include "orderflow/config.h"
#include "orderflow/cwebhook.h"
#include "orderflow/health.h"
#include "orderflow/httpd.h"
#include "orderflow/log.h"
#include "orderflow/rest_bulk.h"
#include "orderflow/rest_inventory.h"
#include "orderflow/rest_orders.h"
#include "orderflow/rest_shipping.h"
#include "orderflow/rest_shops.h"
#include "orderflow/rest_workflows.h"
#include "orderflow/sse.h"
#include "orderflow/webhook.h"
#include "orderflow/worker.h"
#include "orderflow/www.h"

#define HTTPD_GET	0x01	/* GET, and HEAD with it */
#define HTTPD_POST	0x02
#define HTTPD_PUT	0x04
#define HTTPD_DELETE	0x08
#define HTTPD_PATCH	0x10

struct httpd_route {
	const char	*pattern;	/* "/api/orders/{id}" */
	int		methods;	/* HTTPD_* bits */
	httpd_handler	*handler;
};

/* The HTTP surface. tests and the OpenAPI check read the patterns. */
static const struct httpd_route httpd_routes[] = {
	{ "/healthz", HTTPD_GET, health_healthz },
	{ "/readyz", HTTPD_GET, health_readyz },
	{ "/api/health/orders", HTTPD_GET, health_orders },
	{ "/metrics", HTTPD_GET, health_metrics },
	{ "/webhooks/tiktok", HTTPD_POST, webhook_tiktok },
	{ "/webhooks/carrier", HTTPD_POST, cwh_receive },
	{ "/api/admin/dead-letters", HTTPD_GET, admin_dead_letters },
	{ "/api/admin/dead-letters/replay", HTTPD_POST, admin_replay_all },
	{ "/api/admin/dead-letters/{id}/replay", HTTPD_POST, admin_replay_one },
	{ "/api/admin/creators", HTTPD_GET, admin_creators_list },
	{ "/api/admin/creators", HTTPD_POST, admin_creators_create },
	{ "/oauth/tiktok/callback", HTTPD_GET, connect_callback },
	{ "/api/shops", HTTPD_GET, rest_shops_list },
	/* before /api/shops/{id}, which would take "connect" for an id */
	{ "/api/shops/connect", HTTPD_GET, connect_start },
	{ "/api/shops/{id}", HTTPD_DELETE, rest_shops_disconnect },
	{ "/api/shops/{id}/pause", HTTPD_POST, rest_shops_pause },
	{ "/api/shops/{id}/resume", HTTPD_POST, rest_shops_resume },
	{ "/api/orders", HTTPD_GET, rest_orders_list },
	/* before /api/orders/{id}/status, which would take "bulk" for an id */
	{ "/api/orders/bulk/status", HTTPD_POST, rest_bulk_status },
	{ "/api/orders/bulk/{id}", HTTPD_GET, rest_bulk_get },
	{ "/api/orders/{id}", HTTPD_GET, rest_orders_get },
	{ "/api/orders/{id}/status", HTTPD_POST, rest_orders_status },
	{ "/api/orders/{id}/workflow", HTTPD_POST, rest_orders_workflow },
	{ "/api/orders/{id}/workflow/actions", HTTPD_POST, rest_orders_workflow_action },
	{ "/api/orders/{id}/shipping/rates", HTTPD_GET, rest_shipping_rates },
	{ "/api/orders/{id}/shipping/label", HTTPD_POST, rest_shipping_label },
	{ "/api/orders/{id}/shipping/void", HTTPD_POST, rest_shipping_void },
	{ "/api/settings/shipping", HTTPD_GET, rest_shipping_settings },
	{ "/api/settings/shipping", HTTPD_PUT, rest_shipping_settings_put },
	{ "/api/sync/drift", HTTPD_GET, rest_shipping_drift },
	{ "/api/workflows", HTTPD_GET, rest_workflows_inbox },
	{ "/api/workflows/definitions", HTTPD_GET, rest_workflows_definitions },
	{ "/api/workflows/definitions/{name}", HTTPD_GET, rest_workflows_definition },
	{ "/api/workflows/definitions/{name}", HTTPD_PUT, rest_workflows_definition_put },
	{ "/api/workflows/rules", HTTPD_GET, rest_workflows_rules },
	{ "/api/workflows/rules", HTTPD_PUT, rest_workflows_rules_put },
	{ "/api/inventory", HTTPD_GET, rest_inventory_list },
	/* before /api/inventory/{sku}: these names are not SKUs */
	{ "/api/inventory/adjustments", HTTPD_POST, rest_inventory_adjust },
	{ "/api/inventory/import", HTTPD_POST, rest_inventory_import },
	{ "/api/inventory/settings", HTTPD_GET, rest_inventory_settings },
	{ "/api/inventory/settings", HTTPD_PUT, rest_inventory_settings_put },
	{ "/api/inventory/{sku}", HTTPD_PUT, rest_inventory_put },
	{ "/api/events", HTTPD_GET, sse_events },
};

struct httpd {
	struct worker	*w;
	struct evhttp	*http;
	struct evhttp_bound_socket *bound;	/* NULL once we stopped accepting */
	int		sending;		/* answers not yet fully written */
};

/* The dashboard's files (www.c): one more index after the table, for the metrics. */
#define HTTPD_ROUTE_STATIC ((int)NELEM(httpd_routes))

int
httpd_route_count(void)
{
	return HTTPD_ROUTE_STATIC + 1;
}

const char *
httpd_route_pattern(int idx)
{
	if (idx == HTTPD_ROUTE_STATIC)
		return "(static files)";
	return idx >= 0 && idx < (int)NELEM(httpd_routes) ? httpd_routes[idx].pattern : "unmatched";
}

static int
httpd_method_bit(enum evhttp_cmd_type cmd)
{
	switch (cmd) {
	case EVHTTP_REQ_GET:
	case EVHTTP_REQ_HEAD:
		return HTTPD_GET;
	case EVHTTP_REQ_POST:
		return HTTPD_POST;
	case EVHTTP_REQ_PUT:
		return HTTPD_PUT;
	case EVHTTP_REQ_DELETE:
		return HTTPD_DELETE;
	case EVHTTP_REQ_PATCH:
		return HTTPD_PATCH;
	default:
		return 0;
	}
}

static const char *
httpd_method_name(enum evhttp_cmd_type cmd)
{
	static const struct { enum evhttp_cmd_type cmd; const char *name; } names[] = {
		{ EVHTTP_REQ_GET, "GET" }, { EVHTTP_REQ_HEAD, "HEAD" }, { EVHTTP_REQ_POST, "POST" },
		{ EVHTTP_REQ_PUT, "PUT" }, { EVHTTP_REQ_DELETE, "DELETE" },
		{ EVHTTP_REQ_PATCH, "PATCH" }, { EVHTTP_REQ_OPTIONS, "OPTIONS" },
		{ EVHTTP_REQ_TRACE, "TRACE" }, { EVHTTP_REQ_CONNECT, "CONNECT" },
	};

	for (size_t i = 0; i < NELEM(names); i++)
		if (names[i].cmd == cmd)
			return names[i].name;
	return "?";
}

/*
 * Match path against pattern without touching either; each {name}
 * segment's start and length go to seg[].  Returns the number of segments
 * captured, or -1 when the path does not match.
 */
static int
httpd_match(const char *pattern, const char *path, const char **seg, size_t *seglen)
{
	int np = 0;

	while (*pattern != '\0' && *path != '\0') {
		if (*pattern == '{') {
			const char *close = strchr(pattern, '}');
			size_t len = strcspn(path, "/");

			if (close == NULL || len == 0 || np == HTTPD_MAX_PARAMS)
				return -1;
			seg[np] = path;
			seglen[np++] = len;
			pattern = close + 1;
			path += len;
			continue;
		}
		if (*pattern++ != *path++)
			return -1;
	}
	return *pattern == '\0' && *path == '\0' ? np : -1;
}

/* Find the route for the path; *allowed collects the methods of matching paths. */
static int
httpd_find_route(struct httpd_req *hr, int method, int *allowed)
{
	const char *seg[HTTPD_MAX_PARAMS];
	size_t seglen[HTTPD_MAX_PARAMS];

	*allowed = 0;
	for (int i = 0; i < (int)NELEM(httpd_routes); i++) {
		int np = httpd_match(httpd_routes[i].pattern, hr->path, seg, seglen);

		if (np < 0)
			continue;
		*allowed |= httpd_routes[i].methods;
		if (!(httpd_routes[i].methods & method))
			continue;
		for (int j = 0; j < np; j++)
			hr->params[j] = xstrndup(seg[j], seglen[j]);
		return i;
	}
	return -1;
}

static void
httpd_allow_header(struct evhttp_request *req, int allowed)
{
	static const struct { int bit; const char *names; } m[] = {
		{ HTTPD_GET, "GET, HEAD" }, { HTTPD_POST, "POST" }, { HTTPD_PUT, "PUT" },
		{ HTTPD_DELETE, "DELETE" }, { HTTPD_PATCH, "PATCH" },
	};
	char buf[64] = "";

	for (size_t i = 0; i < NELEM(m); i++) {
		if (!(allowed & m[i].bit))
			continue;
		if (buf[0] != '\0')
			strcat(buf, ", ");
		strcat(buf, m[i].names);
	}
	evhttp_add_header(evhttp_request_get_output_headers(req), "Allow", buf);
}

/*
 * A body whose length two headers tell differently is how requests are
 * smuggled past a proxy that reads the other one: RFC 9112 section 6.3
 * says 400 and close.  NULL when the framing is unambiguous.
 */
static const char *
httpd_framing_error(struct evhttp_request *req)
{
	struct evkeyvalq *h = evhttp_request_get_input_headers(req);
	const char *length = NULL;
	bool chunked = false;
	struct evkeyval *kv;

	TAILQ_FOREACH(kv, h, next) {
		if (evutil_ascii_strcasecmp(kv->key, "Content-Length") == 0) {
			if (length != NULL && strcmp(length, kv->value) != 0)
				return "the request has two different Content-Length headers";
			length = kv->value;
		} else if (evutil_ascii_strcasecmp(kv->key, "Transfer-Encoding") == 0) {
			chunked = true;
		}
	}
	return chunked && length != NULL ?
	    "the request has both Transfer-Encoding and Content-Length" : NULL;
}

static void
httpd_on_request(struct evhttp_request *req, void *arg)
{
	struct httpd *h = arg;
	struct httpd_req *hr = xcalloc(1, sizeof(*hr));
	const char *path = evhttp_uri_get_path(evhttp_request_get_evhttp_uri(req));
	enum evhttp_cmd_type cmd = evhttp_request_get_command(req);
	int method = httpd_method_bit(cmd), allowed;
	const char *framing;

	hr->req = req;
	hr->w = h->w;
	hr->route = -1;
	hr->start_us = util_mono_us();
	hr->path = xstrdup(path != NULL && path[0] != '\0' ? path : "/");
	atomic_fetch_add(&h->w->inflight, 1);
	if (h->w->draining) {
		evhttp_add_header(evhttp_request_get_output_headers(req), "Connection", "close");
		httpd_error(hr, 503, "shutting_down", "the server is shutting down");
		return;
	}
	if ((framing = httpd_framing_error(req)) != NULL) {
		/* What follows on this connection cannot be trusted to be a request. */
		evhttp_add_header(evhttp_request_get_output_headers(req), "Connection", "close");
		httpd_error(hr, 400, "bad_request", "%s", framing);
		return;
	}
	hr->route = httpd_find_route(hr, method, &allowed);
	if (hr->route >= 0) {
		httpd_routes[hr->route].handler(hr);
	} else if (allowed == 0 && www_claims(h->w->cfg->site, hr->path)) {
		hr->route = HTTPD_ROUTE_STATIC;
		www_serve(hr);
	} else if (allowed != 0) {
		httpd_allow_header(req, allowed);
		httpd_error(hr, 405, "method_not_allowed", "%s is not allowed on %s",
		    httpd_method_name(cmd), hr->path);
	} else {
		httpd_error(hr, 404, "not_found", "no such resource: %s", hr->path);
	}
}

/* Count, log and free a request that was just answered. */
static void
httpd_done(struct httpd_req *hr, int status)
{
	struct worker *w = hr->w;
	int64_t dur = util_mono_us() - hr->start_us;

	metrics_observe(&w->metrics, hr->route >= 0 ? hr->route : METRICS_MAX_ROUTES, status, dur);
	log_debug("request", "method=%s path=%s status=%d dur_ms=%.3f",
	    httpd_method_name(evhttp_request_get_command(hr->req)), log_quote(hr->path),
	    status, (double)dur / 1000.0);
	for (int i = 0; i < HTTPD_MAX_PARAMS; i++)
		free(hr->params[i]);
	free(hr->path);
	free(hr);
	if (w->httpd != NULL) {
		atomic_fetch_sub(&w->inflight, 1);
		worker_request_done(w);
	}
}

void
httpd_abandon(struct httpd_req *hr)
{
	for (int i = 0; i < HTTPD_MAX_PARAMS; i++)
		free(hr->params[i]);
	free(hr->path);
	free(hr);
}

/* libevent wrote the whole answer: a drain may now end. */
static void
httpd_on_sent(struct evhttp_request *req, void *arg)
{
	struct httpd *h = arg;

	h->sending--;
	worker_request_done(h->w);
}

void
httpd_reply(struct httpd_req *hr, int status, const char *content_type, const char *body,
    size_t len)
{
	struct evhttp_request *req = hr->req;
	struct httpd *h = hr->w->httpd;

	evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", content_type);
	evbuffer_add(evhttp_request_get_output_buffer(req), body, len);
	if (h != NULL) {
		h->sending++;
		evhttp_request_set_on_complete_cb(req, httpd_on_sent, h);
	}
	evhttp_send_reply(req, status, NULL, NULL);
	httpd_done(hr, status);
}

struct evhttp_request *
httpd_stream_start(struct httpd_req *hr, const char *content_type)
{
	struct evhttp_request *req = hr->req;

	evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", content_type);
	evhttp_send_reply_start(req, 200, "OK");
	httpd_done(hr, 200);
	return req;
}

void
httpd_stream_end(struct worker *w, struct evhttp_request *req)
{
	struct httpd *h = w->httpd;

	/* A stream whose client is gone has no connection: ending it only frees it. */
	if (h != NULL && evhttp_request_get_connection(req) != NULL) {
		h->sending++;
		evhttp_request_set_on_complete_cb(req, httpd_on_sent, h);
	}
	evhttp_send_reply_end(req);
}

void
httpd_reply_json(struct httpd_req *hr, int status, json_t *doc)
{
	/* Nine significant digits: exact enough, without binary noise like 6.3449999. */
	char *text = json_dumps(doc, JSON_COMPACT | JSON_REAL_PRECISION(9));

	json_decref(doc);
	if (text == NULL) {
		httpd_error(hr, 500, "internal", "cannot serialize the answer");
		return;
	}
	httpd_reply(hr, status, "application/json", text, strlen(text));
	free(text);
}

char *
httpd_error_json(const char *code, const char *message)
{
	json_t *doc = json_pack("{s:{s:s,s:s}}", "error", "code", code, "message", message);
	char *text = doc != NULL ? json_dumps(doc, JSON_COMPACT) : NULL;

	json_decref(doc);
	return text != NULL ? text :
	    xstrdup("{\"error\":{\"code\":\"internal\",\"message\":\"out of memory\"}}");
}

void
httpd_error(struct httpd_req *hr, int status, const char *code, const char *fmt, ...)
{
	char *message, *body;
	va_list ap;

	va_start(ap, fmt);
	message = xvasprintf(fmt, ap);
	va_end(ap);
	body = httpd_error_json(code, message);
	httpd_reply(hr, status, "application/json", body, strlen(body));
	free(body);
	free(message);
}

void
httpd_unavailable(struct httpd_req *hr, int retry_after_s, const char *why)
{
	char secs[16];

	snprintf(secs, sizeof(secs), "%d", retry_after_s);
	evhttp_add_header(evhttp_request_get_output_headers(hr->req), "Retry-After", secs);
	httpd_error(hr, 503, "unavailable", "%s", why);
}

/*
 * libevent answers some requests itself, before any handler runs: a body
 * over max_body_size (413), a malformed request (400), an unsupported
 * method.  Its evhttp_send_error writes an HTML page, and libevent 2.1 has
 * no hook to replace it (evhttp_set_errorcb came in 2.2).  libevent calls
 * evhttp_send_error through the PLT, so this definition in the executable
 * takes its place everywhere and every error body stays JSON.  The
 * connection is closed afterwards, since the stream may be mid-request.
 */
void
evhttp_send_error(struct evhttp_request *req, int error, const char *reason)
{
	static const struct { int status; const char *code; const char *message; } map[] = {
		{ 400, "bad_request", "malformed HTTP request, or headers over server.max_header_size" },
		{ 404, "not_found", "no such resource" },
		{ 405, "method_not_allowed", "method not allowed" },
		{ 413, "payload_too_large", "request body larger than server.max_body_size" },
		{ 501, "not_implemented", "method not implemented" },
		{ 503, "unavailable", "service unavailable" },
	};
	const char *code = "http_error", *message = reason != NULL ? reason : "request failed";
	struct worker *w = worker_self();
	struct evbuffer *buf;
	char *body;

	for (size_t i = 0; i < NELEM(map); i++) {
		if (map[i].status == error) {
			code = map[i].code;
			message = map[i].message;
		}
	}
	body = httpd_error_json(code, message);
	evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", "application/json");
	evhttp_add_header(evhttp_request_get_output_headers(req), "Connection", "close");
	if ((buf = evbuffer_new()) != NULL) {
		evbuffer_add(buf, body, strlen(body));
		evhttp_send_reply(req, error, reason, buf);
		evbuffer_free(buf);
	}
	free(body);
	if (w != NULL)
		metrics_observe(&w->metrics, METRICS_MAX_ROUTES, error, 0);
}

struct httpd *
httpd_new(struct worker *w, int listen_fd)
{
	struct httpd *h = xcalloc(1, sizeof(*h));
	struct evconnlistener *lst;

	h->w = w;
	h->http = evhttp_new(w->base);
	/* Take every method so unknown ones get our 404/405, not libevent's. */
	evhttp_set_allowed_methods(h->http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_HEAD |
	    EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE | EVHTTP_REQ_OPTIONS | EVHTTP_REQ_TRACE |
	    EVHTTP_REQ_CONNECT | EVHTTP_REQ_PATCH);
	evhttp_set_gencb(h->http, httpd_on_request, h);
	httpd_reconfigure(h, w->cfg);
	/* The socket is already listening (worker_set_new), hence backlog 0. */
	lst = evconnlistener_new(w->base, NULL, NULL, LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE,
	    0, listen_fd);
	if (lst == NULL || (h->bound = evhttp_bind_listener(h->http, lst)) == NULL) {
		log_error("cannot attach the listener", "fd=%d", listen_fd);
		abort();
	}
	return h;
}

void
httpd_reconfigure(struct httpd *h, const struct config *cfg)
{
	struct timeval tv = {
		.tv_sec = cfg->server.client_timeout / 1000,
		.tv_usec = (cfg->server.client_timeout % 1000) * 1000,
	};

	evhttp_set_max_body_size(h->http, (ev_ssize_t)cfg->server.max_body_size);
	evhttp_set_max_headers_size(h->http, (ev_ssize_t)cfg->server.max_header_size);
	evhttp_set_timeout_tv(h->http, &tv);
}

void
httpd_stop_accepting(struct httpd *h)
{
	if (h->bound != NULL)
		evhttp_del_accept_socket(h->http, h->bound);
	h->bound = NULL;
}

int
httpd_inflight(const struct httpd *h)
{
	return atomic_load(&h->w->inflight);
}

int
httpd_sending(const struct httpd *h)
{
	return h->sending;
}

void
httpd_free(struct httpd *h)
{
	if (h == NULL)
		return;
	evhttp_free(h->http);
	free(h);
}

bool
httpd_is_json(struct httpd_req *hr)
{
	const char *ct = evhttp_find_header(evhttp_request_get_input_headers(hr->req), "Content-Type");
	size_t n = strlen("application/json");

	return ct != NULL && strncasecmp(ct, "application/json", n) == 0 &&
	    (ct[n] == '\0' || ct[n] == ';' || ct[n] == ' ');
}

_Static_assert(NELEM(httpd_routes) + 1 <= METRICS_MAX_ROUTES,
    "metrics keep a row per route, static files included");
