/*
 * rds: one worker's asynchronous Redis connection (hiredis + libevent).
 *
 * Connects on the worker's loop, authenticates and selects the database,
 * then counts as connected.  A PING every second, answered within
 * redis.command_timeout, tells a hung server from an idle one.  Any
 * failure drops the connection and reconnects with jittered exponential
 * backoff; commands issued while down are refused at once.
 *
 * Owned and called by one worker thread; rds_connected() and the stats may
 * be read from any thread.
 */
#ifndef ORDERFLOW_RDS_H
#define ORDERFLOW_RDS_H

#include <stdatomic.h>
#include <stdbool.h>

#include "orderflow/util.h"

struct event_base;
struct config;
struct redisReply;
struct rds;

/* reply is NULL when the connection failed before an answer came. */
typedef void rds_cb(struct redisReply *reply, void *arg);

struct rds *rds_new(struct event_base *base, const struct config *cfg);
void rds_start(struct rds *r);
void rds_reconfigure(struct rds *r, const struct config *cfg);
/* Disconnect for good; pending callbacks run with a NULL reply. */
void rds_close(struct rds *r);
/* Free (closing first); rds_connected() stays readable until then. */
void rds_free(struct rds *r);

/*
 * Send a command (hiredis printf-style format).  Returns false, without
 * calling cb, when not connected.
 */
bool rds_command(struct rds *r, rds_cb *cb, void *arg, const char *fmt, ...) MUSTCHECK;

bool rds_connected(const struct rds *r);
/* True once the first connect attempt has finished. */
bool rds_tried(const struct rds *r);
/* Round trip of the last health PING, in microseconds (-1 if none). */
int64_t rds_ping_us(const struct rds *r);

#endif
