/*
 * tt: signed TikTok Shop API calls, envelope parsing, the breaker.
 */
#include "config.h"

#include <event2/buffer.h>
#include <event2/http.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "orderflow/breaker.h"
#include "orderflow/config.h"
#include "orderflow/htc.h"
#include "orderflow/log.h"
#include "orderflow/tok.h"
#include "orderflow/tt.h"
#include "orderflow/ttsign.h"
#include "orderflow/util.h"
#include "orderflow/worker.h"

#define TT_DETAIL_PATH	"/order/202309/orders"
#define TT_SEARCH_PATH	"/order/202309/orders/search"

/* Error codes of the envelope that we treat specially. */
#define TT_CODE_THROTTLED	36009002
#define TT_CODE_TIMESTAMP	106002

enum tt_outcome { TT_OUT_OK, TT_OUT_RETRY, TT_OUT_TOKEN, TT_OUT_FATAL, TT_OUT_MAX };

static const char *const tt_outcome_names[TT_OUT_MAX] = { "ok", "retry", "token", "fatal" };

struct tt {
	struct worker	*w;
	struct htc	*htc;
	struct htc	*auth;		/* the token endpoints' host (tiktok.auth_base) */
	struct breaker	breaker;
	atomic_ullong	outcomes[TT_OUT_MAX];	/* answers by kind */
	atomic_ullong	throttled;		/* 429 or 36009002 */
};

/* One call in flight. */
struct tt_req {
	struct tt	*t;
	tt_cb		*cb;
	void		*arg;
	/* To send it once more with a renewed token (shop calls only). */
	char		*shop_id;	/* NULL: not renewable */
	char		*method;
	char		*url;
	char		*body;
	char		*token;		/* the token it was sent with */
	bool		resent;
	char		error[256];	/* TikTok's refusal, kept for the caller */
	long long	code;
};

static void
tt_req_free(struct tt_req *q)
{
	free(q->shop_id);
	free(q->method);
	free(q->url);
	free(q->body);
	free(q->token);
	free(q);
}

struct tt *
tt_new(struct worker *w)
{
	const struct config *cfg = w->cfg;
	struct tt *t = xcalloc(1, sizeof(*t));
	struct htc_config hc = {
		.base_url = cfg->tiktok.api_base,
		.ca_file = cfg->tiktok.ca_file,
		.connections = (int)cfg->tiktok.connections,
		.max_queue = (int)cfg->tiktok.connections * 64,
		.connect_timeout_ms = cfg->tiktok.connect_timeout,
		.timeout_ms = cfg->tiktok.request_timeout,
	};
	struct breaker_config bc = {
		.failure_threshold = (int)cfg->tiktok.breaker_threshold,
		.window_ms = cfg->tiktok.breaker_window,
		.reset_ms = cfg->tiktok.breaker_reset,
	};
	char *cause = NULL;

	t->w = w;
	if ((t->htc = htc_new(w->base, &hc, &cause)) == NULL) {
		log_error("cannot set up the TikTok API client", "api_base=%s error=%s",
		    log_quote(cfg->tiktok.api_base), log_quote(cause));
		exit(1);
	}
	hc.base_url = cfg->tiktok.auth_base;
	hc.connections = 1;
	hc.max_queue = 256;
	if ((t->auth = htc_new(w->base, &hc, &cause)) == NULL) {
		log_error("cannot set up the TikTok token client", "auth_base=%s error=%s",
		    log_quote(cfg->tiktok.auth_base), log_quote(cause));
		exit(1);
	}
	breaker_init(&t->breaker, "tiktok", &bc, w->wheel);
	return t;
}

void
tt_close(struct tt *t)
{
	htc_close(t->htc);
	htc_close(t->auth);
	breaker_stop(&t->breaker);
}

void
tt_free(struct tt *t)
{
	if (t == NULL)
		return;
	breaker_stop(&t->breaker);
	htc_free(t->htc);
	htc_free(t->auth);
	free(t);
}

int64_t
tt_breaker_wait_ms(struct tt *t)
{
	uint64_t now = worker_now_ms();

	if (breaker_get_state(&t->breaker) != BREAKER_OPEN || t->breaker.reset_at <= now)
		return 0;
	return (int64_t)(t->breaker.reset_at - now);
}

/* Sort an error code of the envelope. */
static enum tt_status
tt_classify_code(json_int_t code)
{
	if (code == TT_CODE_THROTTLED || code == TT_CODE_TIMESTAMP)
		return TT_RETRY;
	/* 105xxx: access token invalid or expired; 106001/106003: sign or app key refused. */
	if ((code >= 105000 && code < 106000) || code == 106001 || code == 106003)
		return TT_TOKEN;
	return TT_FATAL;
}

/* Turn an HTTP answer into a result; *doc holds what r->data points into. */
static void
tt_parse(const struct htc_response *hr, struct tt_result *r, json_t **doc, char *err, size_t errsz)
{
	json_t *code, *data;

	*doc = NULL;
	r->status = TT_RETRY;
	r->error = err;
	r->data = NULL;
	r->code = 0;
	r->retry_after_ms = hr->retry_after != NULL ? (int64_t)strtol(hr->retry_after, NULL, 10) * 1000 : 0;
	if (r->retry_after_ms < 0 || r->retry_after_ms > 3600 * 1000)
		r->retry_after_ms = 0;
	if (hr->error != HTC_OK) {
		snprintf(err, errsz, "%s", hr->error_text);
		return;
	}
	if (hr->status == 429 || hr->status >= 500) {
		snprintf(err, errsz, "HTTP %d", hr->status);
		return;
	}
	if (hr->status != 200) {
		r->status = hr->status == 401 || hr->status == 403 ? TT_TOKEN : TT_FATAL;
		snprintf(err, errsz, "HTTP %d", hr->status);
		return;
	}
	*doc = json_loadb(hr->body, hr->body_len, 0, NULL);
	code = json_object_get(*doc, "code");
	if (!json_is_object(*doc) || !json_is_integer(code)) {
		snprintf(err, errsz, "answer is not a TikTok API envelope");
		return;
	}
	if (json_integer_value(code) != 0) {
		const char *msg = json_string_value(json_object_get(*doc, "message"));

		r->status = tt_classify_code(json_integer_value(code));
		r->code = (long long)json_integer_value(code);
		snprintf(err, errsz, "code %lld: %.200s", (long long)json_integer_value(code),
		    msg != NULL ? msg : "");
		return;
	}
	data = json_object_get(*doc, "data");
	if (!json_is_object(data)) {
		r->status = TT_FATAL;
		snprintf(err, errsz, "answer has no data object");
		return;
	}
	r->status = TT_OK;
	r->data = data;
	err[0] = '\0';
}

static void tt_on_recovered(void *arg, enum tok_outcome o, const char *token, const char *why);

static void
tt_on_response(const struct htc_response *hr, void *arg)
{
	struct tt_req *q = arg;
	struct tt *t = q->t;
	struct tt_result r;
	json_t *doc;
	char err[256];
	static const enum tt_outcome out[] = {
		[TT_OK] = TT_OUT_OK, [TT_RETRY] = TT_OUT_RETRY, [TT_TOKEN] = TT_OUT_TOKEN,
		[TT_FATAL] = TT_OUT_FATAL, [TT_OPEN] = TT_OUT_RETRY,
	};

	tt_parse(hr, &r, &doc, err, sizeof(err));
	util_count(&t->outcomes[out[r.status]], 1);
	if (hr->status == 429 || strstr(err, "code 36009002") == err)
		util_count(&t->throttled, 1);
	/* Only an unhealthy service trips the breaker; a 4xx answer is a healthy one. */
	if (hr->error == HTC_ECLOSED)
		;
	else if (r.status == TT_RETRY)
		breaker_failure(&t->breaker, worker_now_ms());
	else
		breaker_success(&t->breaker, worker_now_ms());
	if (r.status == TT_TOKEN && q->shop_id != NULL && !q->resent) {
		/* Perhaps only expired, or renewed meanwhile: ask tok, then once more. */
		snprintf(q->error, sizeof(q->error), "%s", r.error);
		q->code = r.code;
		json_decref(doc);
		tok_recover(t->w->svc[SERVICE_TOK], q->shop_id, q->token, tt_on_recovered, q);
		return;
	}
	q->cb(&r, q->arg);
	json_decref(doc);
	tt_req_free(q);
}

static void
tt_on_recovered(void *arg, enum tok_outcome o, const char *token, const char *why)
{
	struct tt_req *q = arg;
	struct tt_result r = { .status = o == TOK_LATER ? TT_RETRY : TT_TOKEN, .error = q->error,
	    .code = o == TOK_LATER ? 0 : q->code };
	const char *headers[] = { "x-tts-access-token", token, NULL };

	if (o == TOK_RETRY_WITH && token != NULL) {
		free(q->token);
		q->token = xstrdup(token);
		q->resent = true;
		if (htc_request(q->t->htc, q->method, q->url, headers, q->body,
		    q->body != NULL ? strlen(q->body) : 0, tt_on_response, q))
			return;
		snprintf(q->error, sizeof(q->error), "the TikTok client's queue is full");
		r.status = TT_RETRY;
		r.code = 0;
	} else if (o == TOK_LATER) {
		snprintf(q->error, sizeof(q->error), "%s", why);
	} else if (why != NULL && why[0] != '\0') {
		snprintf(q->error + strlen(q->error), sizeof(q->error) - strlen(q->error), "; %s", why);
	}
	q->cb(&r, q->arg);
	tt_req_free(q);
}

/* path?k=v&... with the values URL-encoded, NUL-terminated (caller frees). */
static struct evbuffer *
tt_url(const char *path, const struct ttsign_param *params, size_t n)
{
	struct evbuffer *url = evbuffer_new();

	evbuffer_add_printf(url, "%s", path);
	for (size_t i = 0; i < n; i++) {
		char *v = evhttp_uriencode(params[i].value, -1, 0);

		evbuffer_add_printf(url, "%c%s=%s", i == 0 ? '?' : '&', params[i].key, v);
		free(v);
	}
	evbuffer_add(url, "", 1);
	return url;
}

/* What htc_request said, as a status; q is freed when it was not sent. */
static enum tt_status
tt_sent(struct tt *t, struct tt_req *q, bool sent)
{
	if (sent)
		return TT_OK;
	tt_req_free(q);
	/* A probe that never went out must not hold the half-open breaker. */
	if (breaker_get_state(&t->breaker) == BREAKER_HALF_OPEN)
		breaker_failure(&t->breaker, worker_now_ms());
	return TT_RETRY;
}

/* Sign and send; params must leave room for the four added here. */
static enum tt_status
tt_send(struct tt *t, const struct tt_creds *c, const char *method, const char *path,
    struct ttsign_param *params, size_t n, const char *body, tt_cb *cb, void *arg)
{
	char ts[24], sign[TTSIGN_HEX_LEN + 1];
	struct evbuffer *url;
	const char *headers[] = { "x-tts-access-token", c->access_token, NULL };
	struct tt_req *q;
	bool sent;

	if (!breaker_allow(&t->breaker, worker_now_ms()))
		return TT_OPEN;
	snprintf(ts, sizeof(ts), "%lld", (long long)time(NULL));
	params[n++] = (struct ttsign_param){ "app_key", c->app_key };
	params[n++] = (struct ttsign_param){ "timestamp", ts };
	if (c->shop_cipher[0] != '\0')
		params[n++] = (struct ttsign_param){ "shop_cipher", c->shop_cipher };
	ttsign_request(c->app_secret, path, params, n, body, body ? strlen(body) : 0, sign);
	params[n++] = (struct ttsign_param){ "sign", sign };
	url = tt_url(path, params, n);
	q = xcalloc(1, sizeof(*q));
	*q = (struct tt_req){ .t = t, .cb = cb, .arg = arg };
	if (c->shop_id != NULL) {
		/* Kept whole: the signature does not cover the token, so the URL stays good. */
		q->shop_id = xstrdup(c->shop_id);
		q->method = xstrdup(method);
		q->url = xstrdup((const char *)evbuffer_pullup(url, -1));
		q->body = body != NULL ? xstrdup(body) : NULL;
		q->token = xstrdup(c->access_token);
	}
	sent = htc_request(t->htc, method, (const char *)evbuffer_pullup(url, -1), headers, body,
	    body ? strlen(body) : 0, tt_on_response, q);
	evbuffer_free(url);
	return tt_sent(t, q, sent);
}

enum tt_status
tt_get_orders(struct tt *t, const struct tt_creds *c, const char *const *ids, size_t n,
    tt_cb *cb, void *arg)
{
	struct ttsign_param params[8];
	struct evbuffer *list = evbuffer_new();
	enum tt_status st;

	for (size_t i = 0; i < n && i < TT_DETAIL_MAX; i++)
		evbuffer_add_printf(list, "%s%s", i > 0 ? "," : "", ids[i]);
	evbuffer_add(list, "", 1);
	params[0] = (struct ttsign_param){ "ids", (const char *)evbuffer_pullup(list, -1) };
	st = tt_send(t, c, "GET", TT_DETAIL_PATH, params, 1, NULL, cb, arg);
	evbuffer_free(list);
	return st;
}

enum tt_status
tt_search_orders(struct tt *t, const struct tt_creds *c, int64_t ge, int64_t lt, int page_size,
    const char *page_token, tt_cb *cb, void *arg)
{
	struct ttsign_param params[8];
	char size[16], body[96];
	size_t n = 0;

	snprintf(size, sizeof(size), "%d", page_size);
	snprintf(body, sizeof(body), "{\"update_time_ge\":%lld,\"update_time_lt\":%lld}",
	    (long long)ge, (long long)lt);
	params[n++] = (struct ttsign_param){ "page_size", size };
	if (page_token != NULL && page_token[0] != '\0')
		params[n++] = (struct ttsign_param){ "page_token", page_token };
	params[n++] = (struct ttsign_param){ "sort_field", "update_time" };
	params[n++] = (struct ttsign_param){ "sort_order", "ASC" };
	return tt_send(t, c, "POST", TT_SEARCH_PATH, params, n, body, cb, arg);
}

enum tt_status
tt_call(struct tt *t, const struct tt_creds *c, const char *method, const char *path,
    const struct ttsign_param *query, size_t nquery, const char *body, tt_cb *cb, void *arg)
{
	struct ttsign_param params[TT_CALL_PARAMS + 4];

	if (nquery > TT_CALL_PARAMS)
		return TT_FATAL;
	if (nquery > 0)
		memcpy(params, query, nquery * sizeof(*query));
	return tt_send(t, c, method, path, params, nquery, body, cb, arg);
}

enum tt_status
tt_auth_get(struct tt *t, const char *path, const struct ttsign_param *query, size_t nquery,
    tt_cb *cb, void *arg)
{
	struct evbuffer *url;
	struct tt_req *q;
	bool sent;

	if (!breaker_allow(&t->breaker, worker_now_ms()))
		return TT_OPEN;
	url = tt_url(path, query, nquery);
	q = xcalloc(1, sizeof(*q));
	*q = (struct tt_req){ .t = t, .cb = cb, .arg = arg };
	sent = htc_request(t->auth, "GET", (const char *)evbuffer_pullup(url, -1), NULL, NULL, 0,
	    tt_on_response, q);
	evbuffer_free(url);
	return tt_sent(t, q, sent);
}

const char *
tt_breaker_summary(struct worker_set *s)
{
	enum breaker_state worst = BREAKER_CLOSED;

	for (int i = 0; i < s->n; i++) {
		enum breaker_state st = breaker_get_state(&((struct tt *)s->workers[i].svc[SERVICE_TT])->breaker);

		if (breaker_state_rank(st) > breaker_state_rank(worst))
			worst = st;
	}
	return breaker_state_name(worst);
}

void
tt_metrics(struct evbuffer *out, struct worker_set *s)
{
	unsigned long long outc[TT_OUT_MAX] = { 0 }, thr = 0;

	evbuffer_add_printf(out,
	    "# HELP orderflow_tiktok_breaker_state TikTok circuit breaker: 0 closed, 1 half open, 2 open.\n"
	    "# TYPE orderflow_tiktok_breaker_state gauge\n");
	for (int i = 0; i < s->n; i++) {
		struct tt *t = s->workers[i].svc[SERVICE_TT];

		for (int k = 0; k < TT_OUT_MAX; k++)
			outc[k] += atomic_load(&t->outcomes[k]);
		thr += atomic_load(&t->throttled);
		evbuffer_add_printf(out, "orderflow_tiktok_breaker_state{worker=\"%d\"} %d\n", i,
		    breaker_state_rank(breaker_get_state(&t->breaker)));
	}
	evbuffer_add_printf(out,
	    "# HELP orderflow_tiktok_breaker_opens_total Times a TikTok breaker opened.\n"
	    "# TYPE orderflow_tiktok_breaker_opens_total counter\n");
	for (int i = 0; i < s->n; i++)
		evbuffer_add_printf(out, "orderflow_tiktok_breaker_opens_total{worker=\"%d\"} %llu\n", i,
		    (unsigned long long)atomic_load(&((struct tt *)s->workers[i].svc[SERVICE_TT])->breaker.opens_total));
	evbuffer_add_printf(out,
	    "# HELP orderflow_tiktok_breaker_rejected_total Calls refused while the breaker was open.\n"
	    "# TYPE orderflow_tiktok_breaker_rejected_total counter\n");
	for (int i = 0; i < s->n; i++)
		evbuffer_add_printf(out, "orderflow_tiktok_breaker_rejected_total{worker=\"%d\"} %llu\n",
		    i, (unsigned long long)atomic_load(&((struct tt *)s->workers[i].svc[SERVICE_TT])->breaker.rejected_total));
	evbuffer_add_printf(out,
	    "# HELP orderflow_tiktok_requests_total TikTok API answers by outcome.\n"
	    "# TYPE orderflow_tiktok_requests_total counter\n");
	for (int k = 0; k < TT_OUT_MAX; k++)
		evbuffer_add_printf(out, "orderflow_tiktok_requests_total{outcome=\"%s\"} %llu\n",
		    tt_outcome_names[k], outc[k]);
	evbuffer_add_printf(out,
	    "# HELP orderflow_tiktok_throttled_total Answers that were HTTP 429 or code 36009002.\n"
	    "# TYPE orderflow_tiktok_throttled_total counter\n"
	    "orderflow_tiktok_throttled_total %llu\n", thr);
}
