/*
 * admin: operator endpoints under /api/admin, guarded by admin.token.
 *
 * Dead letters (webhook events that exhausted their retries or can never
 * succeed) are listed newest first and replayed: a replay clears dead_at,
 * attempts and the lease, writes audit_log, and wakes the claim sweep,
 * which hands the event to its owner worker like any stored event.
 * Without admin.token the endpoints answer 403.
 *
 * Called by httpd (handlers).
 */
#ifndef ORDERFLOW_ADMIN_H
#define ORDERFLOW_ADMIN_H

struct httpd_req;
struct pg_pool;

/* Most dead letters one list or replay-all call returns or replays. */
#define ADMIN_LIST_MAX 500
#define ADMIN_REPLAY_MAX 10000

void admin_prepare(struct pg_pool *pg);
void admin_dead_letters(struct httpd_req *hr);
void admin_replay_one(struct httpd_req *hr);
void admin_replay_all(struct httpd_req *hr);
/* GET /api/admin/creators?limit&after, POST /api/admin/creators {"email","name","id"} */
void admin_creators_list(struct httpd_req *hr);
void admin_creators_create(struct httpd_req *hr);

#endif
