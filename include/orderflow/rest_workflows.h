/*
 * rest_workflows: the creators' workflow endpoints.
 *
 *   GET /api/workflows                     the needs-attention inbox (failed,
 *                                          paused, waiting by default), by deadline
 *   GET /api/workflows/definitions         built-in templates and the creator's
 *                                          definitions (latest versions)
 *   GET /api/workflows/definitions/{name}  one (?version=N for an older one)
 *   PUT /api/workflows/definitions/{name}  a new version, validated (If-Match)
 *   GET /api/workflows/rules               the rules that pick a new order's workflow
 *   PUT /api/workflows/rules               new rules, validated (If-Match)
 *
 * Called by httpd (the route table) on the request's worker.
 */
#ifndef ORDERFLOW_REST_WORKFLOWS_H
#define ORDERFLOW_REST_WORKFLOWS_H

struct httpd_req;
struct pg_pool;

void rest_workflows_prepare(struct pg_pool *pg);
void rest_workflows_inbox(struct httpd_req *hr);
void rest_workflows_definitions(struct httpd_req *hr);
void rest_workflows_definition(struct httpd_req *hr);
void rest_workflows_definition_put(struct httpd_req *hr);
void rest_workflows_rules(struct httpd_req *hr);
void rest_workflows_rules_put(struct httpd_req *hr);

#endif
