/*
 * carrier: EasyPost v2 calls, its error envelope, the carrier's breaker.
 */
#include "config.h"

#include <event2/buffer.h>
#include <event2/http.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "orderflow/breaker.h"
#include "orderflow/carrier.h"
#include "orderflow/config.h"
#include "orderflow/htc.h"
#include "orderflow/log.h"
#include "orderflow/service.h"
#include "orderflow/util.h"
#include "orderflow/worker.h"

/* Bytes of a shipment or rate id we accept ("shp_" + 32 hex in EasyPost). */
#define CR_ID_MAX 100

enum cr_outcome { CR_OUT_OK, CR_OUT_RETRY, CR_OUT_UNKNOWN, CR_OUT_FATAL, CR_OUT_MAX };

static const char *const cr_outcome_names[CR_OUT_MAX] = { "ok", "retry", "unknown", "fatal" };

struct carrier {
	struct worker	*w;
	struct htc	*htc;
	struct breaker	breaker;
	atomic_ullong	outcomes[CR_OUT_MAX];
	atomic_ullong	throttled;	/* 429 answers */
};

struct cr_req {
	struct carrier	*c;
	bool		effect;		/* the call changes something (a purchase, a refund) */
	cr_cb		*cb;
	void		*arg;
};

struct carrier *
cr_new(struct worker *w)
{
	const struct config *cfg = w->cfg;
	struct carrier *c = xcalloc(1, sizeof(*c));
	struct htc_config hc = {
		.base_url = cfg->carrier.api_base,
		.ca_file = cfg->carrier.ca_file,
		.connections = (int)cfg->carrier.connections,
		.max_queue = (int)cfg->carrier.connections * 64,
		.connect_timeout_ms = cfg->carrier.connect_timeout,
		.timeout_ms = cfg->carrier.request_timeout,
	};
	struct breaker_config bc = {
		.failure_threshold = (int)cfg->carrier.breaker_threshold,
		.window_ms = cfg->carrier.breaker_window,
		.reset_ms = cfg->carrier.breaker_reset,
	};
	char *cause = NULL;

	c->w = w;
	if ((c->htc = htc_new(w->base, &hc, &cause)) == NULL) {
		log_error("cannot set up the carrier API client", "api_base=%s error=%s",
		    log_quote(cfg->carrier.api_base), log_quote(cause));
		exit(1);
	}
	breaker_init(&c->breaker, "carrier", &bc, w->wheel);
	return c;
}

void
cr_close(struct carrier *c)
{
	htc_close(c->htc);
	breaker_stop(&c->breaker);
}

void
cr_free(struct carrier *c)
{
	if (c == NULL)
		return;
	breaker_stop(&c->breaker);
	htc_free(c->htc);
	free(c);
}

int64_t
cr_breaker_wait_ms(struct carrier *c)
{
	uint64_t now = worker_now_ms();

	if (breaker_get_state(&c->breaker) != BREAKER_OPEN || c->breaker.reset_at <= now)
		return 0;
	return (int64_t)(c->breaker.reset_at - now);
}

/* EasyPost's {"error": {"code", "message", "errors": [...]}} into err. */
static void
cr_error_text(json_t *doc, int http, const char **code, char *err, size_t errsz)
{
	json_t *e = json_object_get(doc, "error"), *first;
	const char *c = json_string_value(json_object_get(e, "code"));
	const char *m = json_string_value(json_object_get(e, "message"));
	const char *f;

	first = json_array_get(json_object_get(e, "errors"), 0);
	f = json_is_string(first) ? json_string_value(first) :
	    json_string_value(json_object_get(first, "message"));
	*code = c != NULL && strlen(c) < 100 ? c : "";
	snprintf(err, errsz, "HTTP %d %s: %.200s%s%.200s", http, c != NULL ? c : "",
	    m != NULL ? m : "no error message", f != NULL ? ": " : "", f != NULL ? f : "");
}

/* Sort an answer; *doc holds what r->obj points into. */
static void
cr_parse(const struct htc_response *hr, bool effect, struct cr_result *r, json_t **doc, char *err,
    size_t errsz)
{
	*doc = NULL;
	*r = (struct cr_result){ .status = CR_RETRY, .http = hr->status, .code = "", .error = err };
	r->retry_after_ms = hr->retry_after != NULL ?
	    (int64_t)strtol(hr->retry_after, NULL, 10) * 1000 : 0;
	if (r->retry_after_ms < 0 || r->retry_after_ms > 3600 * 1000)
		r->retry_after_ms = 0;
	if (hr->error != HTC_OK) {
		snprintf(err, errsz, "%s", hr->error_text);
		/* A request that went out may have been carried out: a purchase must be checked. */
		if (effect && (hr->error == HTC_EPROTO || (hr->error == HTC_ETIMEOUT &&
		    strncmp(hr->error_text, "read timeout", 12) == 0)))
			r->status = CR_UNKNOWN;
		return;
	}
	*doc = json_loadb(hr->body, hr->body_len, 0, NULL);
	if (hr->status < 200 || hr->status > 299) {
		cr_error_text(*doc, hr->status, &r->code, err, errsz);
		if (hr->status == 429)
			r->status = CR_RETRY;
		else if (hr->status >= 500)
			r->status = effect ? CR_UNKNOWN : CR_RETRY;
		else
			r->status = CR_FATAL;
		return;
	}
	if (!json_is_object(*doc)) {
		snprintf(err, errsz, "HTTP %d: the answer is not a JSON object", hr->status);
		r->status = effect ? CR_UNKNOWN : CR_RETRY;
		return;
	}
	r->status = CR_OK;
	r->obj = *doc;
	err[0] = '\0';
}

static void
cr_on_response(const struct htc_response *hr, void *arg)
{
	struct cr_req *q = arg;
	struct carrier *c = q->c;
	struct cr_result r;
	json_t *doc;
	char err[512];
	static const enum cr_outcome out[] = {
		[CR_OK] = CR_OUT_OK, [CR_RETRY] = CR_OUT_RETRY, [CR_UNKNOWN] = CR_OUT_UNKNOWN,
		[CR_FATAL] = CR_OUT_FATAL, [CR_OPEN] = CR_OUT_RETRY, [CR_NOKEY] = CR_OUT_FATAL,
		[CR_BADID] = CR_OUT_FATAL,
	};

	cr_parse(hr, q->effect, &r, &doc, err, sizeof(err));
	util_count(&c->outcomes[out[r.status]], 1);
	if (hr->status == 429)
		util_count(&c->throttled, 1);
	/* A 4xx is a healthy service refusing a request; only failures trip the breaker. */
	if (hr->error == HTC_ECLOSED)
		;
	else if (r.status == CR_RETRY || r.status == CR_UNKNOWN)
		breaker_failure(&c->breaker, worker_now_ms());
	else
		breaker_success(&c->breaker, worker_now_ms());
	q->cb(&r, q->arg);
	json_decref(doc);
	free(q);
}

/* "Basic base64(key:)": EasyPost's API key as user, no password. */
static void
cr_auth_header(const char *key, char *buf, size_t size)
{
	unsigned char raw[CONFIG_SECRET_MAX + 2];
	size_t n = strlen(key);

	memcpy(raw, key, n);
	raw[n++] = ':';
	memcpy(buf, "Basic ", 6);
	/* 4 * ceil((512 + 1) / 3) + 1 fits the caller's buffer. */
	EVP_EncodeBlock((unsigned char *)buf + 6, raw, (int)n);
	(void)size;
}

static enum cr_status
cr_send(struct carrier *c, const char *method, const char *path, json_t *body, bool effect,
    cr_cb *cb, void *arg)
{
	const char *key = c->w->cfg->carrier.api_key;
	char auth[6 + 4 * ((CONFIG_SECRET_MAX + 3) / 3) + 8], *json = NULL;
	const char *headers[] = { "Authorization", auth, "Accept", "application/json", NULL };
	struct cr_req *q;
	bool sent;

	if (key == NULL)
		return CR_NOKEY;
	if (!breaker_allow(&c->breaker, worker_now_ms()))
		return CR_OPEN;
	cr_auth_header(key, auth, sizeof(auth));
	if (body != NULL)
		json = json_dumps(body, JSON_COMPACT);
	q = xcalloc(1, sizeof(*q));
	*q = (struct cr_req){ c, effect, cb, arg };
	sent = htc_request(c->htc, method, path, headers, json != NULL ? json :
	    strcmp(method, "POST") == 0 ? "" : NULL, json != NULL ? strlen(json) : 0,
	    cr_on_response, q);
	free(json);
	if (!sent) {
		free(q);
		if (breaker_get_state(&c->breaker) == BREAKER_HALF_OPEN)
			breaker_failure(&c->breaker, worker_now_ms());
		return CR_RETRY;
	}
	return CR_OK;
}

/* An id that can stand in a path: EasyPost's are [a-z]+_[0-9a-f]+. */
static bool
cr_id_ok(const char *id)
{
	size_t n = id != NULL ? strlen(id) : 0;

	return n > 0 && n <= CR_ID_MAX && strspn(id, "abcdefghijklmnopqrstuvwxyz"
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-") == n;
}

enum cr_status
cr_create_shipment(struct carrier *c, json_t *shipment, cr_cb *cb, void *arg)
{
	json_t *body = json_pack("{s:O}", "shipment", shipment);
	enum cr_status st = cr_send(c, "POST", "/shipments", body, false, cb, arg);

	json_decref(body);
	return st;
}

enum cr_status
cr_get_shipment(struct carrier *c, const char *id, cr_cb *cb, void *arg)
{
	char path[CR_ID_MAX + 32];

	if (!cr_id_ok(id))
		return CR_BADID;
	snprintf(path, sizeof(path), "/shipments/%s", id);
	return cr_send(c, "GET", path, NULL, false, cb, arg);
}

enum cr_status
cr_buy(struct carrier *c, const char *id, const char *rate_id, cr_cb *cb, void *arg)
{
	char path[CR_ID_MAX + 32];
	json_t *body;
	enum cr_status st;

	if (!cr_id_ok(id) || !cr_id_ok(rate_id))
		return CR_BADID;
	snprintf(path, sizeof(path), "/shipments/%s/buy", id);
	body = json_pack("{s:{s:s}}", "rate", "id", rate_id);
	st = cr_send(c, "POST", path, body, true, cb, arg);
	json_decref(body);
	return st;
}

enum cr_status
cr_refund(struct carrier *c, const char *id, cr_cb *cb, void *arg)
{
	char path[CR_ID_MAX + 32];

	if (!cr_id_ok(id))
		return CR_BADID;
	snprintf(path, sizeof(path), "/shipments/%s/refund", id);
	return cr_send(c, "POST", path, NULL, true, cb, arg);
}

const char *
cr_breaker_summary(struct worker_set *s)
{
	enum breaker_state worst = BREAKER_CLOSED;

	for (int i = 0; i < s->n; i++) {
		enum breaker_state st = breaker_get_state(
		    &((struct carrier *)s->workers[i].svc[SERVICE_CARRIER])->breaker);

		if (breaker_state_rank(st) > breaker_state_rank(worst))
			worst = st;
	}
	return breaker_state_name(worst);
}

void
cr_metrics(struct evbuffer *out, struct worker_set *s)
{
	unsigned long long outc[CR_OUT_MAX] = { 0 }, thr = 0, opens = 0, rejected = 0;

	evbuffer_add_printf(out,
	    "# HELP orderflow_carrier_breaker_state Carrier circuit breaker: 0 closed, 1 half open, 2 open.\n"
	    "# TYPE orderflow_carrier_breaker_state gauge\n");
	for (int i = 0; i < s->n; i++) {
		struct carrier *c = s->workers[i].svc[SERVICE_CARRIER];

		for (int k = 0; k < CR_OUT_MAX; k++)
			outc[k] += atomic_load(&c->outcomes[k]);
		thr += atomic_load(&c->throttled);
		opens += atomic_load(&c->breaker.opens_total);
		rejected += atomic_load(&c->breaker.rejected_total);
		evbuffer_add_printf(out, "orderflow_carrier_breaker_state{worker=\"%d\"} %d\n", i,
		    breaker_state_rank(breaker_get_state(&c->breaker)));
	}
	evbuffer_add_printf(out,
	    "# HELP orderflow_carrier_breaker_opens_total Times a carrier breaker opened.\n"
	    "# TYPE orderflow_carrier_breaker_opens_total counter\n"
	    "orderflow_carrier_breaker_opens_total %llu\n"
	    "# HELP orderflow_carrier_breaker_rejected_total Carrier calls refused while the breaker was open.\n"
	    "# TYPE orderflow_carrier_breaker_rejected_total counter\n"
	    "orderflow_carrier_breaker_rejected_total %llu\n"
	    "# HELP orderflow_carrier_throttled_total Carrier answers that were HTTP 429.\n"
	    "# TYPE orderflow_carrier_throttled_total counter\n"
	    "orderflow_carrier_throttled_total %llu\n"
	    "# HELP orderflow_carrier_requests_total Carrier API answers by outcome.\n"
	    "# TYPE orderflow_carrier_requests_total counter\n", opens, rejected, thr);
	for (int k = 0; k < CR_OUT_MAX; k++)
		evbuffer_add_printf(out, "orderflow_carrier_requests_total{outcome=\"%s\"} %llu\n",
		    cr_outcome_names[k], outc[k]);
}
