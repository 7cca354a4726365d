/*
 * sse: live updates, GET /api/events (Server-Sent Events).
 *
 * The events are rows of creator_events (sql/014), written by triggers
 * in the transactions that made the changes, so whatever worker or
 * daemon made a change, every daemon's streams see it.  Each worker with
 * open streams follows the log on its own: every events.poll_interval it
 * reads the rows past its position (xid, seq) whose transactions have all
 * ended (below the snapshot's xmin: see the migration), and hands each
 * to the live streams of that row's creator.  A worker with no stream
 * reads nothing.
 *
 * A stream that comes with Last-Event-ID first replays that creator's
 * rows from there up to the worker's position, then goes live; when the
 * row it names was already deleted (events.retention) it is told
 * "reset" first.  Every event carries its id, so a client that lost its
 * connection resumes without a gap or a repeat.
 *
 * Streams are capped per worker (events.max_streams, 503) and per
 * creator in the process (events.max_streams_per_creator, 429); a client
 * that reads slower than its events come is disconnected past
 * events.max_buffer.  Quiet streams get a comment every events.heartbeat.
 * A drain ends every stream (clients reconnect elsewhere).  Worker 0
 * also deletes events older than events.retention.
 *
 * A per-worker service (SERVICE_EVENTS); httpd routes GET /api/events to
 * sse_events.
 */
#ifndef ORDERFLOW_SSE_H
#define ORDERFLOW_SSE_H

struct evbuffer;
struct httpd_req;
struct pg_pool;
struct sse;
struct worker;
struct worker_set;

/* Rows read per query: a backlog is read in steps, the loop stays responsive. */
#define SSE_BATCH 1000

void sse_prepare(struct pg_pool *pg);
struct sse *sse_new(struct worker *w);
void sse_start(struct sse *s);
/* A drain began: end every stream. */
void sse_drain(struct sse *s);
void sse_close(struct sse *s);
void sse_free(struct sse *s);
void sse_metrics(struct evbuffer *out, struct worker_set *set);

/* GET /api/events */
void sse_events(struct httpd_req *hr);

#endif
