/*
 * rest_shops: GET /api/shops, POST /api/shops/{id}/pause and /resume,
 * DELETE /api/shops/{id} (disconnect: no token, no sync, orders kept).
 *
 * Every statement is scoped by the caller's creator id; a shop of another
 * creator is simply not found.  A change is audited and makes every worker
 * of this process reload its shops at once (other daemons within
 * webhook.shop_refresh).  Called by httpd.
 */
#ifndef ORDERFLOW_REST_SHOPS_H
#define ORDERFLOW_REST_SHOPS_H

struct httpd_req;
struct pg_pool;

void rest_shops_prepare(struct pg_pool *pg);
void rest_shops_list(struct httpd_req *hr);
void rest_shops_pause(struct httpd_req *hr);
void rest_shops_resume(struct httpd_req *hr);
void rest_shops_disconnect(struct httpd_req *hr);

#endif
