/*
 * cwebhook: verify, store and apply the carrier's webhook events.
 */
#include "config.h"

#include <event2/buffer.h>
#include <event2/http.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "orderflow/config.h"
#include "orderflow/cwebhook.h"
#include "orderflow/httpd.h"
#include "orderflow/log.h"
#include "orderflow/ostore.h"
#include "orderflow/pg.h"
#include "orderflow/ttsign.h"
#include "orderflow/util.h"
#include "orderflow/worker.h"

#define CWH_SIG_PREFIX "hmac-sha256-hex="

static const char cwh_sql[] =
    "SELECT fresh, order_id::text, user_id::text, tiktok_order_id FROM carrier_event($1, $2, $3,"
    " $4, $5, $6::timestamptz, $7::jsonb, $8, $9, $10)";

void
cwh_prepare(struct pg_pool *pg)
{
	pg_pool_prepare(pg, "cwh_event", cwh_sql);
}

/* The order a stored event applied to, told on its owner worker. */
struct cwh_change {
	char	creator[37], id[37], tiktok_id[65];
};

static void
cwh_on_owner(struct worker *w, void *arg)
{
	struct cwh_change *c = arg;
	struct order_change ch = { .kind = ORDER_CHANGE_SHIPPING, .creator = c->creator,
	    .id = c->id, .tiktok_id = c->tiktok_id, .order_status = -1 };

	ostore_changed(w, &ch);
	free(c);
}

static void
cwh_drop(struct worker *w, void *arg)
{
	free(arg);
}

static void
cwh_on_stored(struct pg_batch *b, void *arg)
{
	struct httpd_req *hr = arg;
	PGresult *r = pg_batch_result(b, 0);
	const char *error = pg_batch_error(b);
	bool fresh;

	if (error != NULL || r == NULL || PQntuples(r) != 1) {
		log_warn("carrier event not stored", "error=%s", log_quote(error != NULL ? error :
		    "no row"));
		httpd_unavailable(hr, 5, "the event could not be stored; send it again");
		return;
	}
	fresh = strcmp(PQgetvalue(r, 0, 0), "t") == 0;
	if (fresh && !PQgetisnull(r, 0, 1) && !PQgetisnull(r, 0, 3)) {
		struct cwh_change *c = xcalloc(1, sizeof(*c));

		snprintf(c->id, sizeof(c->id), "%s", PQgetvalue(r, 0, 1));
		snprintf(c->creator, sizeof(c->creator), "%s", PQgetvalue(r, 0, 2));
		snprintf(c->tiktok_id, sizeof(c->tiktok_id), "%s", PQgetvalue(r, 0, 3));
		ostore_post(hr->w, c->tiktok_id, cwh_on_owner, cwh_drop, c);
	}
	httpd_reply_json(hr, 200, json_pack("{s:b,s:b,s:b}", "received", 1, "duplicate", !fresh,
	    "applied", !PQgetisnull(r, 0, 1)));
}

/* A string field of at most max bytes, or NULL. */
static const char *
cwh_str(json_t *obj, const char *key, size_t max)
{
	const char *s = json_string_value(json_object_get(obj, key));

	return s != NULL && s[0] != '\0' && strlen(s) <= max ? s : NULL;
}

/* An ISO 8601 time as EasyPost writes it ("2026-12-03T10:00:00Z"), or NULL. */
static const char *
cwh_time(json_t *obj, const char *key)
{
	const char *s = cwh_str(obj, key, 40);

	return s != NULL && strlen(s) >= 10 && strspn(s, "0123456789-:T.Z+ ") == strlen(s) &&
	    s[4] == '-' ? s : NULL;
}

/* The event's fields as carrier_event's parameters; NULL when it is not usable. */
static const char *
cwh_params(json_t *ev, const char **v, json_t **entry)
{
	json_t *res = json_object_get(ev, "result"), *last;
	const char *obj = cwh_str(res, "object", 40);

	v[0] = cwh_str(ev, "id", 100);
	v[1] = cwh_str(ev, "description", 100);
	if (v[0] == NULL || v[1] == NULL || !json_is_object(res))
		return "the event needs an id, a description and a result object";
	if (obj != NULL && strcmp(obj, "Tracker") == 0) {
		v[2] = cwh_str(res, "tracking_code", 100);
		v[3] = cwh_str(res, "id", 100);
		v[4] = cwh_str(res, "status", 50);
		v[5] = cwh_time(res, "updated_at");
		if (v[2] == NULL || v[4] == NULL)
			return "a tracker event needs a tracking_code and a status";
		last = json_array_get(json_object_get(res, "tracking_details"),
		    json_array_size(json_object_get(res, "tracking_details")) - 1);
		*entry = json_pack("{s:s,s:s?,s:s?,s:s,s:s}", "status", v[4], "message",
		    cwh_str(last, "message", 500), "datetime", cwh_time(last, "datetime"),
		    "source", "carrier", "event_id", v[0]);
	} else if (obj != NULL && strcmp(obj, "Refund") == 0) {
		v[8] = cwh_str(res, "shipment_id", 100);
		v[9] = cwh_str(res, "status", 50);
	}
	return NULL;
}

void
cwh_receive(struct httpd_req *hr)
{
	const char *secret = hr->w->cfg->carrier.webhook_secret, *bad;
	struct evbuffer *in = evhttp_request_get_input_buffer(hr->req);
	size_t len = evbuffer_get_length(in);
	const char *sig = evhttp_find_header(evhttp_request_get_input_headers(hr->req),
	    "X-Hmac-Signature");
	const char *v[10] = { NULL }, *body;
	json_t *ev, *entry = NULL;
	struct pg_batch *b;
	char *ej;

	if (secret == NULL) {
		httpd_error(hr, 503, "not_configured", "carrier webhooks are off: "
		    "carrier.webhook_secret_file is not set");
		return;
	}
	if (!httpd_is_json(hr)) {
		httpd_error(hr, 415, "unsupported_media_type", "Content-Type must be application/json");
		return;
	}
	if (len > CWH_BODY_MAX) {
		httpd_error(hr, 413, "payload_too_large", "an event is at most %d bytes", CWH_BODY_MAX);
		return;
	}
	body = len > 0 ? (const char *)evbuffer_pullup(in, -1) : "";
	if (sig == NULL || strncmp(sig, CWH_SIG_PREFIX, strlen(CWH_SIG_PREFIX)) != 0 ||
	    !ttsign_body_verify(secret, body, len, sig + strlen(CWH_SIG_PREFIX))) {
		httpd_error(hr, 401, "invalid_signature", "X-Hmac-Signature is missing or does not "
		    "match the body");
		return;
	}
	if ((ev = json_loadb(body, len, JSON_REJECT_DUPLICATES, NULL)) == NULL || !json_is_object(ev)) {
		json_decref(ev);
		httpd_error(hr, 400, "invalid_json", "the body is not a JSON object");
		return;
	}
	if ((bad = cwh_params(ev, v, &entry)) != NULL) {
		json_decref(ev);
		httpd_error(hr, 400, "invalid_event", "%s", bad);
		return;
	}
	ej = entry != NULL ? json_dumps(entry, JSON_COMPACT) : NULL;
	v[6] = ej;
	v[7] = "";
	b = pg_batch_new(cwh_on_stored, hr);
	/* The body as text; it is valid JSON, hence valid UTF-8 without NUL. */
	{
		char *raw = xmalloc(len + 1);

		memcpy(raw, body, len);
		raw[len] = '\0';
		v[7] = raw;
		pg_batch_add(b, true, "cwh_event", 10, v);
		free(raw);
	}
	free(ej);
	json_decref(entry);
	json_decref(ev);
	if (pg_submit(hr->w->pg, b) != PG_OK)
		httpd_unavailable(hr, 5, "the database is unavailable");
}
