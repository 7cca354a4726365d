/*
 * carrier: the label broker's API client of one worker (EasyPost v2).
 *
 * Shipments with rates, buying a rate, refunding (voiding) a label and
 * reading a shipment back, over the worker's HTTPS client (htc) to
 * carrier.api_base, with the API key (read from carrier.api_key_file) as
 * HTTP Basic user.  Every call is bounded by carrier.request_timeout and
 * HTC_MAX_BODY; answers are EasyPost objects, errors its envelope
 * {"error": {"code", "message", "errors"}}, sorted for the caller's retry
 * policy.  The carrier's breaker (carrier.breaker_*) lives here: while it
 * is open nothing is sent.
 *
 * Owned by one worker; called by ship (the workflow's shipping steps).
 */
#ifndef ORDERFLOW_CARRIER_H
#define ORDERFLOW_CARRIER_H

#include <jansson.h>
#include <stdint.h>

struct evbuffer;
struct carrier;
struct worker;
struct worker_set;

enum cr_status {
	CR_OK,		/* 2xx: obj is the object answered */
	CR_RETRY,	/* 429, 5xx, time-out, connection failure: try again later */
	CR_UNKNOWN,	/* the request may have been acted on (read time-out, 5xx after
			   sending a purchase): find out before sending it again */
	CR_FATAL,	/* any other 4xx: the request is wrong or refused as it stands */
	CR_OPEN,	/* the breaker is open: nothing was sent */
	CR_NOKEY,	/* no API key is configured: nothing was sent */
	CR_BADID,	/* the shipment or rate id cannot stand in a path: nothing was sent */
};

struct cr_result {
	enum cr_status	status;
	int		http;		/* HTTP status, 0 when none arrived */
	const char	*code;		/* EasyPost's error code ("SHIPMENT.POSTAGE.EXISTS"), or "" */
	const char	*error;		/* for logs and last_error; "" on success */
	json_t		*obj;		/* CR_OK: the answer's object (borrowed during the callback) */
	int64_t		retry_after_ms;	/* from Retry-After, 0 if none */
};

typedef void cr_cb(const struct cr_result *r, void *arg);

/* Exits the process when carrier.api_base or carrier.ca_file is unusable. */
struct carrier *cr_new(struct worker *w);
/* Fail what is in flight (callbacks run with CR_RETRY) and close the connections. */
void cr_close(struct carrier *c);
void cr_free(struct carrier *c);

/*
 * The calls.  Each returns CR_OK when sent (cb runs later, exactly once),
 * or CR_OPEN, CR_NOKEY, CR_BADID or CR_RETRY (queue full) without calling cb.
 */
/* POST /shipments {"shipment": shipment} (borrowed). */
enum cr_status cr_create_shipment(struct carrier *c, json_t *shipment, cr_cb *cb, void *arg);
/* GET /shipments/{id}. */
enum cr_status cr_get_shipment(struct carrier *c, const char *id, cr_cb *cb, void *arg);
/* POST /shipments/{id}/buy {"rate": {"id": rate_id}}. */
enum cr_status cr_buy(struct carrier *c, const char *id, const char *rate_id, cr_cb *cb,
    void *arg);
/* POST /shipments/{id}/refund. */
enum cr_status cr_refund(struct carrier *c, const char *id, cr_cb *cb, void *arg);

/* Ms until the open breaker lets a probe through (0 when it is not open). */
int64_t cr_breaker_wait_ms(struct carrier *c);
/* Prometheus lines for every worker's client and breaker. */
void cr_metrics(struct evbuffer *out, struct worker_set *s);
/* "closed", "open" or "half_open": the worst state over the workers. */
const char *cr_breaker_summary(struct worker_set *s);

#endif
