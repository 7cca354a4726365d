/*
 * rest_shipping: the dashboard's shipping endpoints.
 *
 *   GET  /api/settings/shipping           the caller's shipping settings
 *   PUT  /api/settings/shipping           replace them (If-Match: version; 0: none yet)
 *   GET  /api/orders/{id}/shipping/rates  the carrier's rates per package, and the rule's pick
 *   POST /api/orders/{id}/shipping/label  buy now (or again after a void): {"rate_id"} optional
 *   POST /api/orders/{id}/shipping/void   refund the labels not shipped yet
 *   GET  /api/sync/drift                  orders whose status here and on TikTok disagree
 *
 * Every one tenant-scoped (another creator's order is not found) and, for
 * the writes, audited.  The label, rate and void calls run the shipping
 * steps of ship.h on the request's worker: what they record is what the
 * workflow's own steps find, so neither buys a label the other bought.
 *
 * Called by httpd (the route table); statements prepared through the
 * services table.
 */
#ifndef ORDERFLOW_REST_SHIPPING_H
#define ORDERFLOW_REST_SHIPPING_H

struct httpd_req;
struct pg_pool;

void rest_shipping_prepare(struct pg_pool *pg);
void rest_shipping_settings(struct httpd_req *hr);
void rest_shipping_settings_put(struct httpd_req *hr);
void rest_shipping_rates(struct httpd_req *hr);
void rest_shipping_label(struct httpd_req *hr);
void rest_shipping_void(struct httpd_req *hr);
void rest_shipping_drift(struct httpd_req *hr);

#endif
