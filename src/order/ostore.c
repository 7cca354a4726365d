/*
 * ostore: ownership hand-off, the status change statement, the change hook.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "orderflow/apply.h"
#include "orderflow/config.h"
#include "orderflow/log.h"
#include "orderflow/order.h"
#include "orderflow/ostore.h"
#include "orderflow/pg.h"
#include "orderflow/service.h"
#include "orderflow/worker.h"

static const char ostore_status_sql[] =
    "SELECT * FROM order_change($1::jsonb, $2::jsonb, $3::boolean)";

struct worker *
ostore_owner(struct worker_set *s, const char *tiktok_id)
{
	return worker_owner(s, tiktok_id);
}

void
ostore_post(struct worker *w, const char *tiktok_id, worker_fn *fn, worker_fn *drop, void *arg)
{
	struct worker *owner = worker_owner(w->set, tiktok_id);

	if (owner == w)
		fn(w, arg);
	else
		worker_post_owned(owner, fn, drop, arg);
}

void
ostore_changed(struct worker *w, const struct order_change *c)
{
	for (int i = 0; i < SERVICE_COUNT; i++)
		if (service_table[i].order_changed != NULL)
			service_table[i].order_changed(w, c);
}

char *
ostore_items_json(const struct ostore_item *items, int n)
{
	json_t *arr = json_array();
	char *text;

	for (int i = 0; i < n; i++) {
		const struct ostore_item *it = &items[i];
		json_t *acts = json_array();

		if (it->notify)
			json_array_append_new(acts, json_string("notify_customer"));
		if (it->sync)
			json_array_append_new(acts, json_string("sync_to_tiktok"));
		json_array_append_new(arr, json_pack("{s:i,s:s,s:s,s:s,s:o,s:o,s:s,s:s,s:o,s:o,s:o}",
		    "n", it->n, "key", it->key, "user_id", it->creator,
		    "status", order_status_name(it->status),
		    "version", it->version > 0 ? json_integer(it->version) : json_null(),
		    "reason", it->reason != NULL ? json_string(it->reason) : json_null(),
		    "source", order_source_name(it->source), "actor", it->actor,
		    "changed_by", it->changed_by != NULL ? json_string(it->changed_by) : json_null(),
		    "meta", it->meta != NULL ? json_incref(it->meta) : json_null(), "actions", acts));
	}
	text = json_dumps(arr, JSON_COMPACT);
	json_decref(arr);
	return text;
}

void
ostore_machine(char *buf, size_t size)
{
	order_machine_json(buf, size);
}

void
ostore_fire(struct worker *w, PGresult *r)
{
	if (r == NULL || PQnfields(r) < OSTORE_NCOLS)
		return;
	for (int i = 0; i < PQntuples(r); i++) {
		struct order_change c = {
			.kind = ORDER_CHANGE_STATUS,
			.creator = PQgetvalue(r, i, OSTORE_CREATOR),
			.id = PQgetvalue(r, i, OSTORE_ID),
			.tiktok_id = PQgetvalue(r, i, OSTORE_TIKTOK_ID),
			.order_status = -1,
		};

		if (strcmp(PQgetvalue(r, i, OSTORE_VERDICT), "ok") == 0)
			ostore_changed(w, &c);
	}
}

/* A set_status in flight. */
struct ostore_call {
	struct worker	*w;
	ostore_cb	*cb;
	void		*arg;
};

static void
ostore_on_status(struct pg_batch *b, void *arg)
{
	struct ostore_call *c = arg;
	PGresult *r = pg_batch_result(b, 0);
	const char *error = pg_batch_error(b);

	if (error == NULL && (r == NULL || PQnfields(r) != OSTORE_NCOLS))
		error = "unexpected result of order_change";
	if (error == NULL)
		ostore_fire(c->w, r);
	else
		log_warn("status change failed", "error=%s", log_quote(error));
	c->cb(error, error == NULL ? r : NULL, c->arg);
	free(c);
}

bool
ostore_set_status(struct worker *w, const struct ostore_item *items, int n, bool with_order,
    ostore_cb *cb, void *arg)
{
	struct ostore_call *c = xmalloc(sizeof(*c));
	char machine[ORDER_MACHINE_JSON_MAX], *json = ostore_items_json(items, n);
	struct pg_batch *b = pg_batch_new(ostore_on_status, c);

	*c = (struct ostore_call){ w, cb, arg };
	ostore_machine(machine, sizeof(machine));
	pg_batch_add(b, true, "ostore_status", 3,
	    (const char *[]){ json, machine, with_order ? "true" : "false" });
	free(json);
	if (pg_submit(w->pg, b) != PG_OK) {
		free(c);
		return false;
	}
	return true;
}

/* ---- TikTok snapshots ---------------------------------------------------- */

/*
 * One statement, so one transaction and one round trip per set.  prev
 * locks the stored rows first so the history and audit rows see the
 * state they replace; the upsert's WHERE is the never-move-backwards rule.
 */
/* The statuses on the way to the buyer, in order (cancelled is off it). */
#define OSTORE_FORWARD \
    "ARRAY['pending', 'confirmed', 'processing', 'shipped', 'delivered', 'returned']::order_status[]"

static const char ostore_apply_sql[] =
    "WITH shop AS (SELECT id, creator_id FROM shops WHERE id = $1::uuid),"
    " src AS (SELECT * FROM jsonb_to_recordset($2::jsonb) AS x("
    "  tiktok_order_id text, order_status order_status, tiktok_status text,"
    "  update_time bigint, create_time bigint, paid_time bigint, rts_sla_time bigint,"
    "  shipping_due_time bigint, collection_due_time bigint, delivery_sla_time bigint,"
    "  cancel_order_sla_time bigint, is_on_hold boolean, buyer_request_cancel boolean,"
    "  currency text, subtotal numeric, tax numeric, shipping_cost numeric,"
    "  total_amount numeric, payment_status payment_status, customer_name text,"
    "  customer_email text, customer_phone text, shipping_address jsonb,"
    "  shipping_method text, items jsonb, shipping_type text, delivery_option_id text,"
    "  packages jsonb, fulfillment_type text)),"
    " prev AS (SELECT o.id, o.tiktok_order_id, o.order_status, o.tiktok_status,"
    "  o.tiktok_update_time, o.is_on_hold, o.buyer_request_cancel"
    "  FROM orders o JOIN src USING (tiktok_order_id) ORDER BY o.id FOR UPDATE OF o),"
    " up AS (INSERT INTO orders AS o (user_id, shop_id, tiktok_order_id, order_number,"
    "  order_status, tiktok_status, tiktok_update_time, subtotal, tax, total_amount, currency,"
    "  payment_status, customer_name, customer_email, customer_phone, shipping_address,"
    "  shipping_method, shipping_cost, order_date, shipped_date, delivered_date, rts_sla_time,"
    "  shipping_due_time, collection_due_time, delivery_sla_time, cancel_order_sla_time,"
    "  is_on_hold, buyer_request_cancel, last_tiktok_sync, sync_status, shipping_type,"
    "  delivery_option_id, tiktok_packages, fulfillment_type)"
    "  SELECT shop.creator_id, shop.id, s.tiktok_order_id, s.tiktok_order_id, s.order_status,"
    "  s.tiktok_status, to_timestamp(s.update_time), s.subtotal, s.tax, s.total_amount,"
    "  s.currency, s.payment_status, s.customer_name, s.customer_email, s.customer_phone,"
    "  s.shipping_address, s.shipping_method, s.shipping_cost, to_timestamp(s.create_time),"
    "  CASE WHEN s.order_status IN ('shipped', 'delivered') THEN to_timestamp(s.update_time) END,"
    "  CASE WHEN s.order_status = 'delivered' THEN to_timestamp(s.update_time) END,"
    "  to_timestamp(s.rts_sla_time), to_timestamp(s.shipping_due_time),"
    "  to_timestamp(s.collection_due_time), to_timestamp(s.delivery_sla_time),"
    "  to_timestamp(s.cancel_order_sla_time), s.is_on_hold, s.buyer_request_cancel, now(),"
    "  'synced', s.shipping_type, s.delivery_option_id, coalesce(s.packages, '[]'),"
    "  s.fulfillment_type"
    "  FROM src s CROSS JOIN shop"
    /*
     * prev must lock and read the rows before up changes them: a FOR
     * UPDATE run after this statement updated a row skips it.  Reading
     * prev here makes the executor run it first.
     */
    "  WHERE (SELECT count(*) FROM prev) >= 0"
    "  ON CONFLICT (tiktok_order_id) DO UPDATE SET order_status = CASE WHEN"
    "  o.tiktok_status IS NOT DISTINCT FROM EXCLUDED.tiktok_status THEN o.order_status"
    /*
     * Never back along the way to the buyer: TikTok's AWAITING_COLLECTION
     * (processing) arriving after our shipment keeps the order shipped.
     */
    "  WHEN array_position(" OSTORE_FORWARD ", EXCLUDED.order_status)"
    "  < array_position(" OSTORE_FORWARD ", o.order_status) THEN o.order_status"
    "  ELSE EXCLUDED.order_status END,"
    "  tiktok_status = EXCLUDED.tiktok_status, tiktok_update_time = EXCLUDED.tiktok_update_time,"
    "  subtotal = EXCLUDED.subtotal, tax = EXCLUDED.tax, total_amount = EXCLUDED.total_amount,"
    "  currency = EXCLUDED.currency, payment_status = EXCLUDED.payment_status,"
    "  customer_name = EXCLUDED.customer_name, customer_email = EXCLUDED.customer_email,"
    "  customer_phone = EXCLUDED.customer_phone, shipping_address = EXCLUDED.shipping_address,"
    "  shipping_method = EXCLUDED.shipping_method, shipping_cost = EXCLUDED.shipping_cost,"
    "  shipped_date = coalesce(o.shipped_date, EXCLUDED.shipped_date),"
    "  delivered_date = coalesce(o.delivered_date, EXCLUDED.delivered_date),"
    "  rts_sla_time = EXCLUDED.rts_sla_time, shipping_due_time = EXCLUDED.shipping_due_time,"
    "  collection_due_time = EXCLUDED.collection_due_time,"
    "  delivery_sla_time = EXCLUDED.delivery_sla_time,"
    "  cancel_order_sla_time = EXCLUDED.cancel_order_sla_time, is_on_hold = EXCLUDED.is_on_hold,"
    "  buyer_request_cancel = EXCLUDED.buyer_request_cancel, last_tiktok_sync = now(),"
    "  sync_status = 'synced', shipping_type = EXCLUDED.shipping_type,"
    "  delivery_option_id = EXCLUDED.delivery_option_id,"
    "  tiktok_packages = EXCLUDED.tiktok_packages,"
    "  fulfillment_type = EXCLUDED.fulfillment_type, version = o.version + 1"
    "  WHERE o.tiktok_update_time IS NULL OR o.tiktok_update_time < EXCLUDED.tiktok_update_time"
    "  RETURNING o.id, o.user_id, o.tiktok_order_id, o.order_status, o.tiktok_status,"
    "  o.is_on_hold, o.buyer_request_cancel, coalesce(o.rts_sla_time, o.shipping_due_time) AS due),"
    " it AS (INSERT INTO order_items AS i (order_id, user_id, tiktok_product_id, sku_id,"
    "  seller_sku, product_name, product_sku, variant_name, quantity, unit_price, total_price,"
    "  tiktok_line_item_ids, cancelled_quantity, cancelled_line_item_ids)"
    "  SELECT up.id, up.user_id, li.product_id, li.sku_id, li.seller_sku, li.product_name,"
    "  li.product_sku, li.variant_name, li.quantity, li.unit_price, li.total_price, li.line_ids,"
    "  li.cancelled, li.cancelled_ids"
    "  FROM up JOIN src s USING (tiktok_order_id) CROSS JOIN LATERAL jsonb_to_recordset(s.items)"
    "  AS li(product_id text, sku_id text, seller_sku text, product_name text, product_sku text,"
    "  variant_name text, quantity integer, unit_price numeric, total_price numeric,"
    "  line_ids text[], cancelled integer, cancelled_ids text[])"
    "  ON CONFLICT (order_id, sku_id) DO UPDATE SET tiktok_product_id = EXCLUDED.tiktok_product_id,"
    "  seller_sku = EXCLUDED.seller_sku, product_name = EXCLUDED.product_name,"
    "  product_sku = EXCLUDED.product_sku, variant_name = EXCLUDED.variant_name,"
    "  quantity = greatest(EXCLUDED.quantity, i.shipped_quantity),"
    "  unit_price = EXCLUDED.unit_price, total_price = EXCLUDED.total_price,"
    "  tiktok_line_item_ids = EXCLUDED.tiktok_line_item_ids,"
    "  cancelled_quantity = EXCLUDED.cancelled_quantity,"
    "  cancelled_line_item_ids = EXCLUDED.cancelled_line_item_ids RETURNING 1),"
    /*
     * TikTok cancelled some lines (a partial cancellation): the units they
     * held go back, the others stay reserved.  Stock rows are locked in
     * (user_id, sku) order, as inventory_take does, after the orders.
     */
    " cx AS (SELECT r.id AS rid, r.inventory_item_id AS item, r.quantity AS held, n.q AS need"
    "  FROM up JOIN src s USING (tiktok_order_id)"
    "  JOIN inventory_reservations r ON r.order_id = up.id AND r.status = 'active'"
    "  JOIN inventory_items ii ON ii.id = r.inventory_item_id"
    "  CROSS JOIN LATERAL (SELECT coalesce(sum(li.quantity), 0)::integer AS q"
    "  FROM jsonb_to_recordset(s.items) AS li(product_sku text, quantity integer)"
    "  WHERE li.product_sku = ii.sku) n WHERE r.quantity > n.q),"
    " lk AS (SELECT ii.id FROM inventory_items ii WHERE ii.id IN (SELECT item FROM cx)"
    "  ORDER BY ii.user_id, ii.sku FOR NO KEY UPDATE),"
    " rr AS (UPDATE inventory_reservations r SET"
    "  status = CASE WHEN cx.need = 0 THEN 'released' ELSE r.status END,"
    "  released_at = CASE WHEN cx.need = 0 THEN now() ELSE r.released_at END,"
    "  quantity = CASE WHEN cx.need = 0 THEN r.quantity ELSE cx.need END"
    "  FROM cx WHERE r.id = cx.rid AND (SELECT count(*) FROM lk) >= 0"
    "  RETURNING cx.item, cx.held - cx.need AS freed),"
    " sr AS (UPDATE inventory_items ii SET reserved = ii.reserved - f.q"
    "  FROM (SELECT item, sum(freed)::integer AS q FROM rr GROUP BY 1) f WHERE ii.id = f.item"
    "  RETURNING 1),"
    " lg AS (SELECT order_log(coalesce(jsonb_agg(jsonb_build_object("
    "  'order_id', coalesce(up.id, p.id), 'user_id', shop.creator_id,"
    "  'prev_status', p.order_status, 'new_status', up.order_status,"
    "  'reason', 'TikTok status ' || up.tiktok_status, 'source', 'tiktok_shop',"
    "  'meta', jsonb_build_object('tiktok_status', up.tiktok_status,"
    "  'previous_tiktok_status', p.tiktok_status), 'actor', 'tiktok_shop',"
    "  'action', CASE WHEN up.id IS NULL THEN 'order.stale_snapshot'"
    "  WHEN p.id IS NULL THEN 'order.created' ELSE 'order.updated' END,"
    "  'before', CASE WHEN p.id IS NOT NULL THEN jsonb_build_object('order_status',"
    "  p.order_status, 'tiktok_status', p.tiktok_status, 'tiktok_update_time',"
    "  p.tiktok_update_time) END,"
    "  'after', jsonb_build_object('order_status', coalesce(up.order_status, s.order_status),"
    "  'tiktok_status', s.tiktok_status, 'tiktok_update_time', to_timestamp(s.update_time)))),"
    "  '[]')) AS n"
    "  FROM src s CROSS JOIN shop LEFT JOIN up USING (tiktok_order_id)"
    "  LEFT JOIN prev p USING (tiktok_order_id)"
    "  WHERE up.id IS NOT NULL OR p.tiktok_update_time > to_timestamp(s.update_time)),"
    " wk AS (UPDATE order_workflows w SET retry_after = now() FROM up JOIN prev p"
    "  USING (tiktok_order_id) WHERE w.order_id = up.id"
    "  AND w.workflow_status IN ('running', 'waiting', 'paused', 'failed')"
    "  AND (p.tiktok_status IS DISTINCT FROM up.tiktok_status"
    "  OR p.is_on_hold IS DISTINCT FROM up.is_on_hold"
    "  OR p.buyer_request_cancel IS DISTINCT FROM up.buyer_request_cancel)"
    "  AND (w.workflow_status IN ('running', 'waiting')"
    "  OR up.tiktok_status IN ('CANCELLED', 'CANCEL')) RETURNING 1),"
    /*
     * A new order that is not shipped or cancelled yet gets its workflow
     * run in this transaction, still unnamed (the engine picks it by the
     * creator's rules) and leased to this process: if it dies before the
     * engine's first commit, the run is there for the sweep.
     */
    " st AS (INSERT INTO order_workflows (order_id, user_id, tiktok_order_id, workflow_name,"
    "  current_step, workflow_status, deadline_at, retry_after, lease_owner, lease_until)"
    "  SELECT up.id, up.user_id, up.tiktok_order_id, '', '', 'running', up.due, now(), $4,"
    "  now() + $5::bigint * interval '1 millisecond' FROM up LEFT JOIN prev p"
    "  USING (tiktok_order_id) WHERE p.id IS NULL"
    "  AND up.tiktok_status IN ('UNPAID', 'ON_HOLD', 'AWAITING_SHIPMENT')"
    "  ON CONFLICT DO NOTHING RETURNING 1),"
    " ev AS (UPDATE webhook_events SET processed_at = now(), lease_owner = NULL,"
    "  lease_until = NULL, last_error = NULL, attempts = attempts + 1"
    "  WHERE id = ANY ($3::bigint[]) RETURNING 1)"
    " SELECT count(up.id), count(*) FILTER (WHERE up.id IS NULL AND"
    "  p.tiktok_update_time > to_timestamp(s.update_time)),"
    "  count(*) FILTER (WHERE up.id IS NULL AND"
    "  p.tiktok_update_time <= to_timestamp(s.update_time)),"
    "  (SELECT count(*) FROM ev), (SELECT count(*) FROM it), (SELECT n FROM lg),"
    "  (SELECT json_agg(json_build_object('creator', u.user_id, 'id', u.id,"
    "  'tiktok_id', u.tiktok_order_id, 'created', p2.id IS NULL, 'order_status', u.order_status,"
    "  'tiktok_status', u.tiktok_status, 'on_hold', u.is_on_hold,"
    "  'cancel_requested', u.buyer_request_cancel))::text"
    "  FROM up u LEFT JOIN prev p2 USING (tiktok_order_id))"
    " FROM src s LEFT JOIN up USING (tiktok_order_id) LEFT JOIN prev p USING (tiktok_order_id)";

struct ostore_apply_call {
	struct worker	*w;
	json_t		*records;	/* what was written (a reference), for the change hook */
	ostore_apply_cb	*cb;
	void		*arg;
};

/* The record of tiktok_id among what was written, or NULL. */
static json_t *
ostore_apply_record(json_t *records, const char *tiktok_id)
{
	size_t i;
	json_t *rec;

	json_array_foreach(records, i, rec)
		if (strcmp(json_string_value(json_object_get(rec, "tiktok_order_id")), tiktok_id) == 0)
			return rec;
	return NULL;
}

/* Tell the subscribers about every order the statement inserted or changed. */
static void
ostore_apply_fire(struct ostore_apply_call *c, const char *changed)
{
	json_t *doc = json_loads(changed, 0, NULL), *o;
	size_t i;


	json_array_foreach(doc, i, o) {
		struct order_change ch = {
			.kind = json_is_true(json_object_get(o, "created")) ? ORDER_CHANGE_CREATED :
			    ORDER_CHANGE_SYNCED,
			.creator = json_string_value(json_object_get(o, "creator")),
			.id = json_string_value(json_object_get(o, "id")),
			.tiktok_id = json_string_value(json_object_get(o, "tiktok_id")),
			.order_status = order_status_parse(json_string_value(json_object_get(o,
			    "order_status"))),
			.tiktok_status = json_string_value(json_object_get(o, "tiktok_status")),
			.on_hold = json_is_true(json_object_get(o, "on_hold")),
			.cancel_requested = json_is_true(json_object_get(o, "cancel_requested")),
		};

		if (ch.creator == NULL || ch.id == NULL || ch.tiktok_id == NULL)
			continue;
		ch.record = ostore_apply_record(c->records, ch.tiktok_id);
		ostore_changed(c->w, &ch);
	}
	json_decref(doc);
}

static void
ostore_apply_on_done(struct pg_batch *b, void *arg)
{
	struct ostore_apply_call *c = arg;
	struct ostore_applied r = { 0, 0, 0 };
	PGresult *res = pg_batch_result(b, 0);
	const char *error = pg_batch_error(b);

	if (error == NULL && (res == NULL || PQntuples(res) != 1 || PQnfields(res) != 7))
		error = "unexpected result of the apply statement";
	if (error == NULL) {
		r.applied = atoi(PQgetvalue(res, 0, 0));
		r.stale = atoi(PQgetvalue(res, 0, 1));
		r.unchanged = atoi(PQgetvalue(res, 0, 2));
		if (!PQgetisnull(res, 0, 6))
			ostore_apply_fire(c, PQgetvalue(res, 0, 6));
	}
	c->cb(error, &r, c->arg);
	json_decref(c->records);
	free(c);
}

bool
ostore_apply(struct worker *w, const char *shop_id, json_t *records, const char *event_ids,
    ostore_apply_cb *cb, void *arg)
{
	struct ostore_apply_call *c = xmalloc(sizeof(*c));
	char *json = json_dumps(records, JSON_COMPACT);
	char lease[24];
	const char *params[5] = { shop_id, json, event_ids, w->set->instance, lease };
	struct pg_batch *b = pg_batch_new(ostore_apply_on_done, c);

	snprintf(lease, sizeof(lease), "%lld", (long long)w->cfg->workflow.lease);
	*c = (struct ostore_apply_call){ w, json_incref(records), cb, arg };
	pg_batch_add(b, true, "ostore_apply", 5, params);
	free(json);
	if (pg_submit(w->pg, b) != PG_OK) {
		json_decref(records);
		free(c);
		return false;
	}
	return true;
}

void
ostore_prepare(struct pg_pool *pg)
{
	pg_pool_prepare(pg, "ostore_status", ostore_status_sql);
	pg_pool_prepare(pg, "ostore_apply", ostore_apply_sql);
}
