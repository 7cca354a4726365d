/*
 * health: the operations endpoints.
 *
 *   /healthz            the process answers (no I/O)
 *   /readyz             every worker reaches PostgreSQL and Redis
 *   /api/health/orders  the specification's health document, every figure measured
 *   /metrics            Prometheus text, summed over workers
 *
 * Called by httpd's route table; health_prepare registers its statements
 * with each worker's pool.
 */
#ifndef ORDERFLOW_HEALTH_H
#define ORDERFLOW_HEALTH_H

struct httpd_req;
struct pg_pool;

void health_prepare(struct pg_pool *pg);

void health_healthz(struct httpd_req *hr);
void health_readyz(struct httpd_req *hr);
void health_orders(struct httpd_req *hr);
void health_metrics(struct httpd_req *hr);

#endif
