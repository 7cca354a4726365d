/*
 * cwebhook: the carrier's webhooks (POST /webhooks/carrier, EasyPost Events).
 *
 * The signature (X-Hmac-Signature: hmac-sha256-hex=<HMAC-SHA256 of the raw
 * body with carrier.webhook_secret>) is checked in constant time before
 * the body is parsed: 401 otherwise, nothing stored.  A verified event is
 * stored and applied in one transaction (carrier_event, sql/010) before
 * the 200: a tracker event sets its shipment's tracking status and
 * timeline, a refund event its refund status; the same event id again is a
 * duplicate (200, nothing applied).  The order's workflow then hears of it
 * on its owner worker (ORDER_CHANGE_SHIPPING), and is woken in the
 * database too, so a crash between the two loses nothing.
 *
 * Statements only (the services table); the handler runs on any worker.
 */
#ifndef ORDERFLOW_CWEBHOOK_H
#define ORDERFLOW_CWEBHOOK_H

struct httpd_req;
struct pg_pool;

/* Bytes of an event body we take (EasyPost events are a few KiB). */
#define CWH_BODY_MAX (256 * 1024)

void cwh_prepare(struct pg_pool *pg);
void cwh_receive(struct httpd_req *hr);

#endif
