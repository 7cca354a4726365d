/*
 * ostore: how orders are written.
 *
 *  - Ownership.  One worker owns an order: worker_owner(set, its TikTok
 *    order id), the same for the process's life.  Every change of an order
 *    (a TikTok snapshot, a status change, a workflow step) runs there;
 *    ostore_post hands work to the owner, so per-order state in memory
 *    needs no lock and changes of one order are applied in order.
 *  - Status changes by people and by the workflow engine go through
 *    ostore_set_status: the SQL function order_change (sql/007) that locks
 *    each order, judges it against the state machine of order.c and the
 *    version, and writes order, history, audit and queued actions in one
 *    transaction.  History and audit rows of every writer come from
 *    order_log (apply uses it for TikTok's snapshots).
 *  - TikTok's snapshots go through ostore_apply: ONE statement for a set
 *    of orders of one shop, hence one transaction: upsert of orders and
 *    order_items, history and audit (order_log), and the webhook events
 *    that brought them marked processed.  An order changes only when the
 *    snapshot's update_time is newer than the stored one; an older one is
 *    written to audit_log only, an equal one changes nothing.  Our
 *    order_status follows TikTok's only when TikTok's status itself
 *    changed, so a local refinement (processing while stock is reserved, a
 *    creator's own change) survives re-syncs of the same TikTok status,
 *    and never back along pending, confirmed, processing, shipped,
 *    delivered, returned (TikTok's AWAITING_COLLECTION after our shipment
 *    keeps it shipped).  TikTok's cancelled lines are kept apart and the
 *    units reserved for them given back in the same statement.
 *  - After a change commits, ostore_changed tells every service that
 *    subscribes (the order_changed hook of the services table: the order
 *    cache, the workflow engine).
 *
 * Called on the owner worker, except ostore_post (any worker).
 */
#ifndef ORDERFLOW_OSTORE_H
#define ORDERFLOW_OSTORE_H

#include <jansson.h>
#include <libpq-fe.h>
#include <stdbool.h>

#include "orderflow/order.h"
#include "orderflow/util.h"
#include "orderflow/worker.h"

struct pg_pool;

/* What committed, for the subscribers. */
enum order_change_kind {
	ORDER_CHANGE_CREATED,	/* a TikTok snapshot made a new order */
	ORDER_CHANGE_SYNCED,	/* a TikTok snapshot changed a known order */
	ORDER_CHANGE_STATUS,	/* order_change changed its status */
	ORDER_CHANGE_WORKFLOW,	/* the workflow engine committed a step of its run */
	ORDER_CHANGE_SHIPPING,	/* the carrier reported on one of its packages */
};

struct order_change {
	enum order_change_kind kind;
	const char	*creator;	/* orders.user_id */
	const char	*id;		/* orders.id */
	const char	*tiktok_id;	/* orders.tiktok_order_id */
	int		order_status;	/* enum order_status now, -1 unknown */
	const char	*tiktok_status;	/* CREATED, SYNCED: TikTok's status; else NULL */
	bool		on_hold;	/* CREATED, SYNCED: TikTok's is_on_hold_order */
	bool		cancel_requested; /* CREATED, SYNCED: is_buyer_request_cancel */
	json_t		*record;	/* CREATED, SYNCED: apply's record of the order, or NULL */
};

void ostore_prepare(struct pg_pool *pg);

/* The worker that owns the order with this TikTok id. */
struct worker *ostore_owner(struct worker_set *s, const char *tiktok_id);
/*
 * Run fn(owner, arg) on the order's owner: at once when that is w, else
 * through its inbox; drop(owner, arg) instead when the owner has ended.
 */
void ostore_post(struct worker *w, const char *tiktok_id, worker_fn *fn, worker_fn *drop,
    void *arg);

/* Tell the subscribers of the services table (on the owner, after the commit). */
void ostore_changed(struct worker *w, const struct order_change *c);

/* One element of a status change request (order_change's p_items). */
struct ostore_item {
	int		n;		/* its place in the request, from 1 */
	const char	*key;		/* the order's UUID or TikTok order id */
	const char	*creator;	/* whose order it must be */
	int		status;		/* enum order_status wanted */
	long long	version;	/* the version it must be at, 0: any */
	const char	*reason;	/* or NULL */
	enum order_source source;
	const char	*actor;		/* audit actor: "user:<uuid>", "workflow" */
	const char	*changed_by;	/* creator uuid for people, NULL for the system */
	json_t		*meta;		/* history metadata object (borrowed), or NULL */
	bool		notify, sync;	/* queue notify_customer / sync_to_tiktok */
};

/* order_change's p_items for n items (caller frees). */
char *ostore_items_json(const struct ostore_item *items, int n);
/* The state machine as order_change's p_machine (ORDER_MACHINE_JSON_MAX bytes). */
void ostore_machine(char *buf, size_t size);

/* The columns of order_change's rows (and of any statement returning them first). */
enum ostore_col {
	OSTORE_N, OSTORE_KEY, OSTORE_VERDICT, OSTORE_ID, OSTORE_CREATOR, OSTORE_TIKTOK_ID,
	OSTORE_PREV, OSTORE_VERSION, OSTORE_ALLOWED, OSTORE_ORDER, OSTORE_ACTIONS, OSTORE_LOGGED,
	OSTORE_NCOLS
};

/*
 * Called once with the statement's rows (r NULL and error set when it
 * failed); hooks for the changed orders have run by then.
 */
typedef void ostore_cb(const char *error, PGresult *r, void *arg);

/*
 * Change the status of n orders in one transaction, on this worker (the
 * owner of every one of them).  with_order: rows carry the changed order
 * as JSON.  False (cb not called) when the database cannot take it now.
 */
bool ostore_set_status(struct worker *w, const struct ostore_item *items, int n,
    bool with_order, ostore_cb *cb, void *arg) MUSTCHECK;
/* Fire the hooks for the ok rows of r, whose first columns are order_change's. */
void ostore_fire(struct worker *w, PGresult *r);

/* Figures of one applied set of snapshots. */
struct ostore_applied {
	int	applied;	/* orders inserted or changed */
	int	stale;		/* snapshots older than the stored order: audit only */
	int	unchanged;	/* same update_time as stored */
};

typedef void ostore_apply_cb(const char *error, const struct ostore_applied *r, void *arg);

/*
 * Write records (a JSON array of apply_normalize results, unique by order
 * id, every one owned by w; a reference is kept until cb has run) for
 * shop_id, marking event_ids ("{1,2}" or "{}") processed in the same
 * transaction; every order inserted or changed then goes to the change
 * hook with its record (CREATED or SYNCED).  False when the pool refused
 * (database down or busy): cb is not called then.
 */
bool ostore_apply(struct worker *w, const char *shop_id, json_t *records, const char *event_ids,
    ostore_apply_cb *cb, void *arg) MUSTCHECK;

#endif
