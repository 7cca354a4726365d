/*
 * tt: the TikTok Shop Partner API client of one worker (version 202309).
 *
 * Builds and signs each request (app_key, timestamp, shop_cipher, sign in
 * the query; x-tts-access-token header), sends it through the worker's
 * HTTPS pool (htc), reads the {code, message, request_id, data} envelope
 * and sorts the outcome for the caller's retry policy.  The worker's
 * circuit breaker for TikTok lives here: while it is open nothing is sent.
 *
 * Owned by one worker; called by proc (Get Order Detail), poll (Search
 * Orders), ship (Ship Package, shipping documents and providers), tok
 * (token renewals) and connect (the authorization callback);
 * health reads the counters and the breaker state.
 */
#ifndef ORDERFLOW_TT_H
#define ORDERFLOW_TT_H

#include <jansson.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct evbuffer;
struct tt;
struct worker;
struct worker_set;

/* Most order ids one Get Order Detail call takes. */
#define TT_DETAIL_MAX 50

enum tt_status {
	TT_OK,		/* code 0: data is set (or the request was sent, as a return value) */
	TT_RETRY,	/* 429, 5xx, 36009002, timeout, connection failure: try again later */
	TT_TOKEN,	/* the shop's credentials were refused (105xxx, 106001): pause the shop */
	TT_FATAL,	/* any other 4xx or error code: trying again will not help */
	TT_OPEN,	/* the breaker is open: nothing was sent */
};

struct tt_result {
	enum tt_status	status;
	const char	*error;		/* for logs and last_error; "" on success */
	json_t		*data;		/* TT_OK: the envelope's data object (borrowed) */
	int64_t		retry_after_ms;	/* from Retry-After, 0 if none */
	long long	code;		/* the envelope's code (0: none or success) */
};

/* What a request needs of a shop; copied before tt_* returns. */
struct tt_creds {
	const char	*app_key;
	const char	*app_secret;
	const char	*access_token;
	const char	*shop_cipher;	/* "" = none */
	/*
	 * shops.id, or NULL.  When set, a call TikTok answers "token invalid
	 * or expired" goes through tok_recover and is sent once more with the
	 * token it gives; the caller sees only the second answer.
	 */
	const char	*shop_id;
};

typedef void tt_cb(const struct tt_result *r, void *arg);

/* Exits the process when tiktok.api_base or tiktok.ca_file is unusable. */
struct tt *tt_new(struct worker *w);
/* Fail what is in flight (callbacks run with TT_RETRY) and close the connections. */
void tt_close(struct tt *t);
void tt_free(struct tt *t);

/*
 * GET /order/202309/orders?ids=... for 1..TT_DETAIL_MAX ids.  Returns
 * TT_OK when sent (cb runs later, exactly once), TT_OPEN when the breaker
 * refused it, TT_RETRY when the connection queue is full (cb not called).
 */
enum tt_status tt_get_orders(struct tt *t, const struct tt_creds *c, const char *const *ids,
    size_t n, tt_cb *cb, void *arg);
/* POST /order/202309/orders/search, update_time in [ge, lt), oldest first. */
enum tt_status tt_search_orders(struct tt *t, const struct tt_creds *c, int64_t ge, int64_t lt,
    int page_size, const char *page_token, tt_cb *cb, void *arg);

/* Most query parameters of tt_call, besides the four every call has. */
#define TT_CALL_PARAMS 4

struct ttsign_param;
/*
 * Any other call (fulfillment, logistics): method, path without query,
 * up to TT_CALL_PARAMS extra query parameters, a JSON body or NULL.
 * Returns like tt_get_orders.
 */
enum tt_status tt_call(struct tt *t, const struct tt_creds *c, const char *method,
    const char *path, const struct ttsign_param *query, size_t nquery, const char *body,
    tt_cb *cb, void *arg);

/*
 * GET path?query on tiktok.auth_base, unsigned (the token endpoints take
 * app_key and app_secret in the query), through the same breaker.
 * Returns like tt_get_orders.
 */
enum tt_status tt_auth_get(struct tt *t, const char *path, const struct ttsign_param *query,
    size_t nquery, tt_cb *cb, void *arg);

/* Ms until the open breaker lets a probe through (0 when it is not open). */
int64_t tt_breaker_wait_ms(struct tt *t);

/* Prometheus lines for every worker's client and breaker. */
void tt_metrics(struct evbuffer *out, struct worker_set *s);
/* "closed", "open" or "half_open": the worst state over the workers. */
const char *tt_breaker_summary(struct worker_set *s);

#endif
