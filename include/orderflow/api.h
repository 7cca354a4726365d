/*
 * api: the creators' dashboard endpoints under /api/orders.
 *
 * Every handler first authenticates the caller (auth) and takes a token
 * from its rate-limit bucket (ratelimit); every query is then scoped by the
 * authenticated creator, so another creator's order is simply not found.
 * Result documents are built as JSON by PostgreSQL in one round trip.
 * Called by httpd (the route table) on the worker's thread.
 */
#ifndef ORDERFLOW_API_H
#define ORDERFLOW_API_H

struct httpd_req;
struct pg_pool;
struct worker;

/* Orders one page may hold, and the deepest page reachable with "page". */
#define API_LIMIT_MAX 200
#define API_PAGE_MAX 100000
/* Characters of a search prefix. */
#define API_SEARCH_MAX 100

void api_prepare(struct pg_pool *pg);
void api_orders_list(struct httpd_req *hr);
void api_order_get(struct httpd_req *hr);
void api_order_status(struct httpd_req *hr);
void api_order_workflow(struct httpd_req *hr);
void api_bulk_status(struct httpd_req *hr);
void api_bulk_get(struct httpd_req *hr);
/*
 * An order changed (committed): the cached copies of it must not be served
 * again.  Called by the status endpoints and by order processing.
 */
void api_cache_forget(struct worker *w, const char *creator, const char *uuid,
    const char *tiktok_id);
/* The same for apply's list of changed orders ("creator uuid tiktok_id" lines; NULL: none). */
void api_cache_forget_list(struct worker *w, const char *changed);

#endif
