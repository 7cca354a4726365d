/*
 * rest_bulk: bulk status changes of the dashboard API.
 *
 *   POST /api/orders/bulk/status    up to api.max_bulk orders, each owner's
 *                                   share batch_size orders per transaction;
 *                                   every order's outcome stored
 *   GET  /api/orders/bulk/{id}      the batch and each order's outcome
 *
 * Called by httpd (the route table) on the request's worker.
 */
#ifndef ORDERFLOW_REST_BULK_H
#define ORDERFLOW_REST_BULK_H

struct httpd_req;
struct pg_pool;

void rest_bulk_prepare(struct pg_pool *pg);
void rest_bulk_status(struct httpd_req *hr);
void rest_bulk_get(struct httpd_req *hr);

#endif
