/*
 * rest_orders: the creators' order endpoints.
 *
 *   GET  /api/orders                   list: filters, prefix search, sort,
 *                                      page or cursor, summary of the whole set
 *   GET  /api/orders/{id}              one order (UUID or TikTok id) with items,
 *                                      workflow and history (Redis cache, see cache)
 *   POST /api/orders/{id}/status       a status change along the state machine
 *                                      (ostore_set_status, on the order's owner)
 *   POST /api/orders/{id}/workflow     start a workflow now, or replace the live
 *                                      one (force_restart) (the engine, on the owner)
 *   POST /api/orders/{id}/workflow/actions   a manual action on the live
 *                                      workflow (the engine, on the owner)
 *
 * Result documents are built as JSON by PostgreSQL in one round trip.
 * Called by httpd (the route table) on the request's worker.
 */
#ifndef ORDERFLOW_REST_ORDERS_H
#define ORDERFLOW_REST_ORDERS_H

struct httpd_req;
struct pg_pool;

/* Orders one page may hold, and the deepest page reachable with "page". */
#define REST_ORDERS_LIMIT_MAX 200
#define REST_ORDERS_PAGE_MAX 100000
/* Characters of a search prefix. */
#define REST_ORDERS_SEARCH_MAX 100

void rest_orders_prepare(struct pg_pool *pg);
void rest_orders_list(struct httpd_req *hr);
void rest_orders_get(struct httpd_req *hr);
void rest_orders_status(struct httpd_req *hr);
void rest_orders_workflow(struct httpd_req *hr);
void rest_orders_workflow_action(struct httpd_req *hr);

#endif
