/*
 * rest_inventory: the creators' stock endpoints.
 *
 *   GET  /api/inventory               on hand, reserved, available per SKU;
 *                                     ?low_stock=true, ?search= (prefix), cursor
 *   PUT  /api/inventory/{sku}         set on hand (and name, low-stock level;
 *                                     created when missing; If-Match)
 *   POST /api/inventory/adjustments   add or take units, with a reason (audited)
 *   POST /api/inventory/import        up to 10,000 SKUs, JSON or CSV, per-row errors
 *   GET  /api/inventory/settings      what a SKU without a stock row means
 *   PUT  /api/inventory/settings
 *
 * Called by httpd (the route table) on the request's worker.
 */
#ifndef ORDERFLOW_REST_INVENTORY_H
#define ORDERFLOW_REST_INVENTORY_H

struct httpd_req;
struct pg_pool;

/* Rows one import may carry. */
#define REST_INVENTORY_IMPORT_MAX 10000

void rest_inventory_prepare(struct pg_pool *pg);
void rest_inventory_list(struct httpd_req *hr);
void rest_inventory_put(struct httpd_req *hr);
void rest_inventory_adjust(struct httpd_req *hr);
void rest_inventory_import(struct httpd_req *hr);
void rest_inventory_settings(struct httpd_req *hr);
void rest_inventory_settings_put(struct httpd_req *hr);

#endif
