/*
 * order: the order's home.
 *
 * Owns the two status enums and their names (the same spellings as the
 * PostgreSQL enums of sql/001_schema.sql), the order-status state machine
 * (which status may follow which: the only copy; the SQL side is handed
 * this table as JSON, see order_machine_json), the map from TikTok's
 * statuses to ours, and the rules of who writes an order:
 *
 *  - Every change of an order runs on the worker that owns it,
 *    worker_owner(set, tiktok_order_id): order_post hands work to that
 *    worker, so per-order state in memory needs no lock.
 *  - A status change made by a person or by the workflow engine goes
 *    through order_set_status: ONE prepared statement (sql function
 *    order_change) that locks the order, checks the state machine and the
 *    version, writes order, history, audit and queued actions, and says per
 *    order what happened.  TikTok's snapshots (apply) write history and
 *    audit through the same SQL function order_log.
 *  - After a change commits, order_changed tells every service that
 *    subscribes (the services table: the order cache, the workflow engine).
 *
 * The enums and tables are pure and thread-safe; order_post may be called
 * from any worker; order_set_status and order_changed run on the owner.
 */
#ifndef ORDERFLOW_ORDER_H
#define ORDERFLOW_ORDER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "orderflow/util.h"

struct pg_pool;
struct worker;
struct worker_set;

/* orders.order_status: our mapping of TikTok's status. */
enum order_status {
	ORDER_PENDING,		/* UNPAID or ON_HOLD on TikTok */
	ORDER_CONFIRMED,	/* paid, awaiting shipment */
	ORDER_PROCESSING,	/* stock reserved, or partly shipped / awaiting collection */
	ORDER_SHIPPED,		/* in transit */
	ORDER_DELIVERED,	/* delivered or completed */
	ORDER_CANCELLED,	/* cancelled before shipping */
	ORDER_RETURNED,		/* returned after delivery */
	ORDER_STATUS_COUNT
};

/* orders.workflow_status: where the fulfillment workflow stands. */
enum order_wf_status {
	ORDER_WF_NEW,			/* not validated yet */
	ORDER_WF_VALIDATED,		/* validated, stock not reserved */
	ORDER_WF_INVENTORY_RESERVED,	/* every SKU reserved */
	ORDER_WF_READY_TO_SHIP,		/* waiting for the label and the shipment */
	ORDER_WF_SHIPPED,		/* handed to the carrier */
	ORDER_WF_COMPLETED,		/* delivered, workflow finished */
	ORDER_WF_FAILED,		/* the workflow failed or rejected the order */
	ORDER_WF_CANCELLED,		/* the workflow was cancelled and compensated */
	ORDER_WF_STATUS_COUNT
};

/* Who made a change (order_status_history.change_source). */
enum order_source {
	ORDER_SOURCE_SYSTEM,	/* the workflow engine */
	ORDER_SOURCE_USER,	/* a creator through the API */
	ORDER_SOURCE_TIKTOK,	/* a TikTok snapshot */
};

/* The names, in enum order, NULL-terminated. */
extern const char *const order_status_names[ORDER_STATUS_COUNT + 1];
extern const char *const order_wf_status_names[ORDER_WF_STATUS_COUNT + 1];

/* "pending" ... "returned"; NULL when out of range. */
const char *order_status_name(int s);
/* The enum value of a name, or -1. */
int order_status_parse(const char *name);
const char *order_wf_status_name(int s);
int order_wf_status_parse(const char *name);
const char *order_source_name(enum order_source s);

/* Whether the state machine lets an order in status from become to. */
bool order_transition_allowed(enum order_status from, enum order_status to);
/* "[\"confirmed\",\"cancelled\"]": the statuses that may follow from, as JSON. */
void order_allowed_json(enum order_status from, char *buf, size_t size);
/*
 * {"pending":["confirmed","cancelled"],...}: the whole machine, the form
 * the SQL function order_change takes it in (ORDER_MACHINE_JSON_MAX bytes).
 */
#define ORDER_MACHINE_JSON_MAX 512
void order_machine_json(char *buf, size_t size);

/*
 * TikTok's status (webhook or API spelling) to ours, or -1 when unknown.
 * Webhooks say CANCEL where the order API says CANCELLED.
 */
int order_status_from_tiktok(const char *tiktok_status);
/* {"UNPAID": "pending", ...}: the TikTok map for SQL (ORDER_MACHINE_JSON_MAX bytes). */
void order_tiktok_map_json(char *buf, size_t size);
/* True for the TikTok statuses of an order that has not shipped yet. */
bool order_tiktok_before_shipping(const char *tiktok_status);
/* True for UNPAID and ON_HOLD: TikTok forbids acting on the order (and hides the address). */
bool order_tiktok_on_hold(const char *tiktok_status);

#endif
