/*
 * sse: live updates, GET /api/events (see sse.h).
 */
#include "config.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <libpq-fe.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>

#include "orderflow/config.h"
#include "orderflow/httpd.h"
#include "orderflow/jwt.h"
#include "orderflow/log.h"
#include "orderflow/pg.h"
#include "orderflow/rest.h"
#include "orderflow/smap.h"
#include "orderflow/sse.h"
#include "orderflow/twheel.h"
#include "orderflow/util.h"
#include "orderflow/worker.h"

#ifndef TAILQ_FOREACH_SAFE	/* BSD's, not in glibc's sys/queue.h */
#define TAILQ_FOREACH_SAFE(var, head, field, tvar)				\
	for ((var) = TAILQ_FIRST(head);						\
	    (var) != NULL && ((tvar) = TAILQ_NEXT(var, field), 1);		\
	    (var) = (tvar))
#endif

/* Look for old events once a minute; a full batch looks again at once. */
#define SSE_PURGE_MS 60000
#define SSE_PURGE_BATCH 5000
/* What an EventSource client waits before reconnecting. */
#define SSE_RETRY "retry: 2000\n\n"

/* The last position: nothing with a transaction still running can appear below it. */
static const char sse_head_sql[] =
    "SELECT xid::text, seq FROM creator_events"
    " WHERE xid < pg_snapshot_xmin(pg_current_snapshot())"
    " ORDER BY xid DESC, seq DESC LIMIT 1";
static const char sse_poll_sql[] =
    "SELECT xid::text, seq, user_id::text, type, data::text FROM creator_events"
    " WHERE (xid, seq) > ($1::xid8, $2::bigint)"
    " AND xid < pg_snapshot_xmin(pg_current_snapshot())"
    " ORDER BY xid, seq LIMIT $3::integer";
static const char sse_replay_sql[] =
    "SELECT xid::text, seq, user_id::text, type, data::text FROM creator_events"
    " WHERE user_id = $1::uuid AND (xid, seq) > ($2::xid8, $3::bigint)"
    " AND (xid, seq) <= ($4::xid8, $5::bigint)"
    " ORDER BY xid, seq LIMIT $6::integer";
/* The client's last event is still kept: nothing it missed was deleted. */
static const char sse_kept_sql[] =
    "SELECT EXISTS (SELECT 1 FROM creator_events WHERE xid = $1::xid8 AND seq = $2::bigint)";
static const char sse_purge_sql[] =
    "DELETE FROM creator_events WHERE (xid, seq) IN (SELECT xid, seq FROM creator_events"
    " WHERE created_at < now() - $1::bigint * interval '1 millisecond'"
    " ORDER BY created_at LIMIT $2::integer)";

/* A place in the log. */
struct sse_pos {
	unsigned long long xid;
	long long	seq;
};

enum sse_state {
	SSE_WAITING,		/* for the worker's first position */
	SSE_REPLAY,		/* catching up after Last-Event-ID */
	SSE_LIVE,
};

struct sse_group;

/* One open stream. */
struct sse_stream {
	TAILQ_ENTRY(sse_stream) all;	/* s->streams */
	TAILQ_ENTRY(sse_stream) peers;	/* g->streams */
	struct sse	*s;
	struct sse_group *g;
	char		creator[JWT_UUID_LEN + 1];
	struct evhttp_request *req;
	struct evbuffer	*out;		/* what the next write sends */
	struct sse_pos	pos;		/* the last event sent or known to the client */
	struct sse_pos	upper;		/* where the replay in flight stops */
	enum sse_state	state;
	bool		resume;		/* came with Last-Event-ID, not yet checked */
	bool		querying;	/* a replay in flight holds this struct */
	bool		gone;		/* ended while querying: freed by the answer */
	uint64_t	written_ms;	/* last write, for the heartbeat */
};

/* The streams of one creator on this worker. */
struct sse_group {
	TAILQ_HEAD(, sse_stream) streams;
};

/* Streams per creator in the whole process: the one thing workers share. */
struct sse_shared {
	pthread_mutex_t	lock;
	struct smap	*counts;	/* creator -> (intptr_t) open streams */
};

struct sse {
	struct worker	*w;
	struct sse_shared *shared;	/* made and freed by worker 0 */
	TAILQ_HEAD(, sse_stream) streams;
	struct smap	*groups;	/* creator -> struct sse_group */
	struct sse_pos	cursor;		/* the worker's place in the log */
	bool		have_cursor;
	bool		reading;	/* a head or poll query in flight */
	bool		closing;
	struct twheel_timer poll, beat, purge;
	atomic_int	open;
	atomic_ullong	opened, sent, slow, refused, failures, purged;
};

void
sse_prepare(struct pg_pool *pg)
{
	pg_pool_prepare(pg, "sse_head", sse_head_sql);
	pg_pool_prepare(pg, "sse_poll", sse_poll_sql);
	pg_pool_prepare(pg, "sse_replay", sse_replay_sql);
	pg_pool_prepare(pg, "sse_kept", sse_kept_sql);
	pg_pool_prepare(pg, "sse_purge", sse_purge_sql);
}

static int
sse_pos_cmp(const struct sse_pos *a, const struct sse_pos *b)
{
	if (a->xid != b->xid)
		return a->xid < b->xid ? -1 : 1;
	return (a->seq > b->seq) - (a->seq < b->seq);
}

/* "<xid>-<seq>", both decimal; false when s is anything else. */
static bool
sse_pos_parse(const char *s, struct sse_pos *p)
{
	char *end;
	size_t n = strspn(s, "0123456789");

	if (n == 0 || n > 20 || s[n] != '-' || strspn(s + n + 1, "0123456789") !=
	    strlen(s + n + 1) || strlen(s + n + 1) == 0 || strlen(s + n + 1) > 19)
		return false;
	errno = 0;
	p->xid = strtoull(s, &end, 10);
	if (errno != 0)
		return false;
	p->seq = strtoll(s + n + 1, &end, 10);
	return errno == 0;
}

static bool
sse_row_pos(PGresult *r, int i, struct sse_pos *p)
{
	char id[48];

	snprintf(id, sizeof(id), "%s-%s", PQgetvalue(r, i, 0), PQgetvalue(r, i, 1));
	return sse_pos_parse(id, p);
}

/* ---- the per-creator cap ----------------------------------------------- */

static bool
sse_shared_take(struct sse_shared *sh, const char *creator, long long max)
{
	intptr_t n;
	bool ok;

	pthread_mutex_lock(&sh->lock);
	n = (intptr_t)smap_get(sh->counts, creator);
	if ((ok = n < max))
		smap_put(sh->counts, creator, (void *)(n + 1));
	pthread_mutex_unlock(&sh->lock);
	return ok;
}

static void
sse_shared_give(struct sse_shared *sh, const char *creator)
{
	intptr_t n;

	pthread_mutex_lock(&sh->lock);
	n = (intptr_t)smap_get(sh->counts, creator);
	if (n <= 1)
		smap_del(sh->counts, creator);
	else
		smap_put(sh->counts, creator, (void *)(n - 1));
	pthread_mutex_unlock(&sh->lock);
}

/* ---- streams ------------------------------------------------------------ */

/* Take st out of every list and the caps; the struct may live on (querying). */
static void
sse_detach(struct sse_stream *st)
{
	struct sse *s = st->s;

	TAILQ_REMOVE(&s->streams, st, all);
	TAILQ_REMOVE(&st->g->streams, st, peers);
	sse_shared_give(s->shared, st->creator);
	if (TAILQ_EMPTY(&st->g->streams))
		free(smap_del(s->groups, st->creator));
	st->g = NULL;
	atomic_fetch_sub(&s->open, 1);
}

static void
sse_destroy(struct sse_stream *st)
{
	if (st->querying) {
		st->gone = true;
		return;
	}
	evbuffer_free(st->out);
	free(st);
}

/* The client went away: libevent detached the request from its connection. */
static void
sse_on_conn_close(struct evhttp_connection *evcon, void *arg)
{
	struct sse_stream *st = arg;
	struct evhttp_request *req = st->req;

	sse_detach(st);
	httpd_stream_end(st->s->w, req);	/* frees it: no connection left */
	sse_destroy(st);
}

enum sse_end { SSE_END_GRACEFUL, SSE_END_NOW };

/* End a stream ourselves: gracefully (drain), or at once (slow client, error). */
static void
sse_end(struct sse_stream *st, enum sse_end how)
{
	struct evhttp_connection *evcon = evhttp_request_get_connection(st->req);

	sse_detach(st);
	if (evcon != NULL)
		evhttp_connection_set_closecb(evcon, NULL, NULL);
	if (how == SSE_END_NOW && evcon != NULL)
		evhttp_connection_free(evcon);	/* and the request with it */
	else
		httpd_stream_end(st->s->w, st->req);
	sse_destroy(st);
}

/* Write what st->out holds; a client that does not read is let go. */
static bool
sse_flush(struct sse_stream *st)
{
	struct sse *s = st->s;
	struct evhttp_connection *evcon = evhttp_request_get_connection(st->req);
	size_t n = evbuffer_get_length(st->out), queued;

	if (n == 0 || evcon == NULL)
		return true;
	queued = evbuffer_get_length(bufferevent_get_output(evhttp_connection_get_bufferevent(evcon)));
	if ((long long)(queued + n) > s->w->cfg->events.max_buffer) {
		util_count(&s->slow, 1);
		log_info("event stream dropped: the client reads too slowly", "queued=%zu", queued);
		sse_end(st, SSE_END_NOW);
		return false;
	}
	evhttp_send_reply_chunk(st->req, st->out);
	st->written_ms = worker_now_ms();
	return true;
}

static void
sse_append(struct sse_stream *st, PGresult *r, int i, const struct sse_pos *p)
{
	evbuffer_add_printf(st->out, "id: %llu-%lld\nevent: %s\ndata: %s\n\n", p->xid, p->seq,
	    PQgetvalue(r, i, 3), PQgetvalue(r, i, 4));
	st->pos = *p;
	util_count(&st->s->sent, 1);
}

static void sse_replay(struct sse_stream *st);

/* The worker knows its place: a stream starts live, or replays first. */
static void
sse_begin(struct sse_stream *st)
{
	if (st->resume) {
		st->state = SSE_REPLAY;
		sse_replay(st);
	} else {
		st->pos = st->s->cursor;
		st->state = SSE_LIVE;
	}
}

static void
sse_on_replay(struct pg_batch *b, void *arg)
{
	struct sse_stream *st = arg;
	PGresult *r = pg_batch_result(b, 0), *kept = st->resume ? pg_batch_result(b, 1) : NULL;
	int n;

	st->querying = false;
	if (st->gone) {
		sse_destroy(st);
		return;
	}
	if (pg_batch_error(b) != NULL || r == NULL || (st->resume && kept == NULL)) {
		util_count(&st->s->failures, 1);
		sse_end(st, SSE_END_GRACEFUL);	/* the client resumes from what it got */
		return;
	}
	if (st->resume && strcmp(PQgetvalue(kept, 0, 0), "t") != 0)
		evbuffer_add_printf(st->out, "event: reset\ndata: {}\n\n");
	st->resume = false;
	n = PQntuples(r);
	for (int i = 0; i < n; i++) {
		struct sse_pos p;

		if (sse_row_pos(r, i, &p))
			sse_append(st, r, i, &p);
	}
	if (n < SSE_BATCH && sse_pos_cmp(&st->pos, &st->upper) < 0)
		st->pos = st->upper;
	if (!sse_flush(st))
		return;
	/* Live events went by meanwhile, or the batch was full: once more. */
	if (n == SSE_BATCH || sse_pos_cmp(&st->pos, &st->s->cursor) < 0)
		sse_replay(st);
	else
		st->state = SSE_LIVE;
}

static void
sse_replay(struct sse_stream *st)
{
	char x[24], q[24], ux[24], uq[24], lim[16];
	struct pg_batch *b = pg_batch_new(sse_on_replay, st);

	st->upper = st->s->cursor;
	snprintf(x, sizeof(x), "%llu", st->pos.xid);
	snprintf(q, sizeof(q), "%lld", st->pos.seq);
	snprintf(ux, sizeof(ux), "%llu", st->upper.xid);
	snprintf(uq, sizeof(uq), "%lld", st->upper.seq);
	snprintf(lim, sizeof(lim), "%d", SSE_BATCH);
	pg_batch_add(b, true, "sse_replay", 6, (const char *[]){ st->creator, x, q, ux, uq, lim });
	if (st->resume)
		pg_batch_add(b, true, "sse_kept", 2, (const char *[]){ x, q });
	st->querying = true;
	if (pg_submit(st->s->w->pg, b) != PG_OK) {
		st->querying = false;
		util_count(&st->s->failures, 1);
		sse_end(st, SSE_END_GRACEFUL);
	}
}

/* ---- following the log -------------------------------------------------- */

static void
sse_schedule(struct sse *s, int64_t ms)
{
	if (!s->closing)
		twheel_add(s->w->wheel, &s->poll, worker_now_ms() + (uint64_t)ms);
}

/* A stream came: make sure the log is being read. */
static void
sse_kick(struct sse *s)
{
	if (!s->reading && !twheel_pending(&s->poll))
		sse_schedule(s, 0);
	if (!twheel_pending(&s->beat) && !s->closing)
		twheel_add(s->w->wheel, &s->beat, worker_now_ms() +
		    (uint64_t)s->w->cfg->events.heartbeat);
}

/* A row to every live stream of its creator that has not had it. */
static void
sse_dispatch(struct sse *s, PGresult *r, int i, const struct sse_pos *p)
{
	struct sse_group *g = smap_get(s->groups, PQgetvalue(r, i, 2));
	struct sse_stream *st;

	if (g == NULL)
		return;
	TAILQ_FOREACH(st, &g->streams, peers)
		if (st->state == SSE_LIVE && sse_pos_cmp(p, &st->pos) > 0)
			sse_append(st, r, i, p);
}

static void
sse_flush_all(struct sse *s)
{
	struct sse_stream *st, *next;

	TAILQ_FOREACH_SAFE(st, &s->streams, all, next)
		if (evbuffer_get_length(st->out) > 0)
			sse_flush(st);
}

/* The worker's first position: the streams waiting for it start. */
static void
sse_on_head(struct sse *s, PGresult *r)
{
	struct sse_stream *st, *next;

	s->cursor = (struct sse_pos){ 0, 0 };
	if (PQntuples(r) == 1)
		sse_row_pos(r, 0, &s->cursor);
	s->have_cursor = true;
	TAILQ_FOREACH_SAFE(st, &s->streams, all, next)
		if (st->state == SSE_WAITING)
			sse_begin(st);
}

static void
sse_on_read(struct pg_batch *b, void *arg)
{
	struct sse *s = arg;
	PGresult *r = pg_batch_result(b, 0);
	bool head = !s->have_cursor;
	int n = 0;

	s->reading = false;
	if (pg_batch_error(b) != NULL || r == NULL) {
		util_count(&s->failures, 1);
		if (!s->closing)
			log_info("event log read failed; retrying", "error=%s",
			    log_quote(pg_batch_error(b) ? pg_batch_error(b) : "no answer"));
	} else if (head) {
		sse_on_head(s, r);
	} else {
		n = PQntuples(r);
		for (int i = 0; i < n; i++) {
			struct sse_pos p;

			if (!sse_row_pos(r, i, &p))
				continue;
			sse_dispatch(s, r, i, &p);
			s->cursor = p;
		}
		sse_flush_all(s);
	}
	if (TAILQ_EMPTY(&s->streams))
		s->have_cursor = false;	/* nobody follows: read the head again next time */
	else
		sse_schedule(s, n == SSE_BATCH ? 0 : s->w->cfg->events.poll_interval);
}

static void
sse_on_poll(struct twheel_timer *t)
{
	struct sse *s = container_of(t, struct sse, poll);
	char x[24], q[24], lim[16];
	struct pg_batch *b;

	if (s->reading || s->closing)
		return;
	if (TAILQ_EMPTY(&s->streams)) {
		s->have_cursor = false;
		return;
	}
	b = pg_batch_new(sse_on_read, s);
	if (!s->have_cursor) {
		pg_batch_add(b, true, "sse_head", 0, NULL);
	} else {
		snprintf(x, sizeof(x), "%llu", s->cursor.xid);
		snprintf(q, sizeof(q), "%lld", s->cursor.seq);
		snprintf(lim, sizeof(lim), "%d", SSE_BATCH);
		pg_batch_add(b, true, "sse_poll", 3, (const char *[]){ x, q, lim });
	}
	s->reading = true;
	if (pg_submit(s->w->pg, b) != PG_OK) {
		s->reading = false;
		util_count(&s->failures, 1);
		sse_schedule(s, s->w->cfg->events.poll_interval);
	}
}

/* A comment on every stream that wrote nothing for a heartbeat. */
static void
sse_on_beat(struct twheel_timer *t)
{
	struct sse *s = container_of(t, struct sse, beat);
	uint64_t now = worker_now_ms(), every = (uint64_t)s->w->cfg->events.heartbeat;
	struct sse_stream *st, *next;

	TAILQ_FOREACH_SAFE(st, &s->streams, all, next) {
		if (now - st->written_ms + 50 < every)
			continue;
		evbuffer_add(st->out, ": ping\n\n", 8);
		sse_flush(st);
	}
	if (!TAILQ_EMPTY(&s->streams) && !s->closing)
		twheel_add(s->w->wheel, &s->beat, now + every / 2);
}

/* ---- retention (worker 0) ----------------------------------------------- */

static void
sse_on_purged(struct pg_batch *b, void *arg)
{
	struct sse *s = arg;
	PGresult *r = pg_batch_result(b, 0);
	long long n = r != NULL && pg_batch_error(b) == NULL ? strtoll(PQcmdTuples(r), NULL, 10) : -1;

	if (n < 0)
		util_count(&s->failures, 1);
	else
		util_count(&s->purged, (unsigned long long)n);
	if (!s->closing)
		twheel_add(s->w->wheel, &s->purge, worker_now_ms() +
		    (n == SSE_PURGE_BATCH ? 0 : SSE_PURGE_MS));
}

static void
sse_on_purge(struct twheel_timer *t)
{
	struct sse *s = container_of(t, struct sse, purge);
	char ms[24], lim[16];
	struct pg_batch *b = pg_batch_new(sse_on_purged, s);

	snprintf(ms, sizeof(ms), "%lld", (long long)s->w->cfg->events.retention);
	snprintf(lim, sizeof(lim), "%d", SSE_PURGE_BATCH);
	pg_batch_add(b, true, "sse_purge", 2, (const char *[]){ ms, lim });
	if (pg_submit(s->w->pg, b) != PG_OK)
		twheel_add(s->w->wheel, &s->purge, worker_now_ms() + SSE_PURGE_MS);
}

/* ---- GET /api/events ---------------------------------------------------- */

struct sse_call {
	struct rest_call call;		/* first */
	struct sse_pos	last;
	bool		resume;
};

static void
sse_open(struct sse_call *c)
{
	struct sse *s = c->call.home->svc[SERVICE_EVENTS];
	struct evhttp_request *req = c->call.hr->req;
	struct evkeyvalq *out = evhttp_request_get_output_headers(req);
	struct sse_stream *st = xcalloc(1, sizeof(*st));
	struct sse_group *g = smap_get(s->groups, c->call.creator);
	struct evhttp_connection *evcon = evhttp_request_get_connection(req);
	struct timeval wt = { s->w->cfg->server.client_timeout / 1000,
	    (s->w->cfg->server.client_timeout % 1000) * 1000 };

	if (g == NULL) {
		g = xcalloc(1, sizeof(*g));
		TAILQ_INIT(&g->streams);
		smap_put(s->groups, c->call.creator, g);
	}
	st->s = s;
	st->g = g;
	snprintf(st->creator, sizeof(st->creator), "%s", c->call.creator);
	st->req = req;
	st->out = evbuffer_new();
	st->resume = c->resume;
	st->pos = c->last;
	st->state = SSE_WAITING;
	TAILQ_INSERT_TAIL(&s->streams, st, all);
	TAILQ_INSERT_TAIL(&g->streams, st, peers);
	atomic_fetch_add(&s->open, 1);
	util_count(&s->opened, 1);

	evhttp_add_header(out, "Cache-Control", "no-store");
	evhttp_add_header(out, "X-Accel-Buffering", "no");	/* proxies: do not hold events back */
	httpd_stream_start(c->call.hr, "text/event-stream; charset=utf-8");
	c->call.hr = NULL;
	/* A quiet stream is normal: no read deadline, but writes still have one. */
	bufferevent_set_timeouts(evhttp_connection_get_bufferevent(evcon), NULL, &wt);
	evhttp_connection_set_closecb(evcon, sse_on_conn_close, st);
	evbuffer_add(st->out, SSE_RETRY, strlen(SSE_RETRY));
	if (!sse_flush(st))
		return;
	if (s->have_cursor)
		sse_begin(st);
	sse_kick(s);
}

static void
sse_run(struct rest_call *rc)
{
	struct sse_call *c = (struct sse_call *)rc;
	struct sse *s = rc->home->svc[SERVICE_EVENTS];
	const struct config *cfg = rc->home->cfg;

	if (s->closing || atomic_load(&s->open) >= cfg->events.max_streams) {
		util_count(&s->refused, 1);
		rest_unavailable(rc, "too many open event streams on this server");
		return;
	}
	if (!sse_shared_take(s->shared, rc->creator, cfg->events.max_streams_per_creator)) {
		util_count(&s->refused, 1);
		rest_error(rc, 429, "too_many_streams",
		    "this creator already has %lld open event streams (events.max_streams_per_creator)",
		    (long long)cfg->events.max_streams_per_creator);
		return;
	}
	sse_open(c);
	rest_free(rc);
}

void
sse_events(struct httpd_req *hr)
{
	const char *last = evhttp_find_header(evhttp_request_get_input_headers(hr->req),
	    "Last-Event-ID");
	struct sse_call *c;

	if (!rest_no_query(hr))
		return;
	c = xcalloc(1, sizeof(*c));
	if (last != NULL && last[0] != '\0') {
		if (strlen(last) > 41 || !sse_pos_parse(last, &c->last)) {
			free(c);
			httpd_error(hr, 400, "invalid_last_event_id",
			    "Last-Event-ID is not an id this server sent (digits-digits)");
			return;
		}
		c->resume = true;
	}
	rest_begin(hr, &c->call, sse_run);
}

/* ---- the service -------------------------------------------------------- */

struct sse *
sse_new(struct worker *w)
{
	struct sse *s = xcalloc(1, sizeof(*s));

	s->w = w;
	TAILQ_INIT(&s->streams);
	s->groups = smap_new();
	twheel_timer_init(&s->poll, sse_on_poll);
	twheel_timer_init(&s->beat, sse_on_beat);
	twheel_timer_init(&s->purge, sse_on_purge);
	if (w->id == 0) {
		s->shared = xcalloc(1, sizeof(*s->shared));
		pthread_mutex_init(&s->shared->lock, NULL);
		s->shared->counts = smap_new();
	} else {
		s->shared = ((struct sse *)w->set->workers[0].svc[SERVICE_EVENTS])->shared;
	}
	return s;
}

void
sse_start(struct sse *s)
{
	if (s->w->id == 0)
		twheel_add(s->w->wheel, &s->purge, worker_now_ms() + 1000);
}

void
sse_drain(struct sse *s)
{
	struct sse_stream *st;

	s->closing = true;
	twheel_cancel(&s->poll);
	twheel_cancel(&s->beat);
	twheel_cancel(&s->purge);
	while ((st = TAILQ_FIRST(&s->streams)) != NULL)
		sse_end(st, SSE_END_GRACEFUL);
}

void
sse_close(struct sse *s)
{
	/* The loop has ended: what is left is freed with its connections. */
	struct sse_stream *st;

	s->closing = true;
	twheel_cancel(&s->poll);
	twheel_cancel(&s->beat);
	twheel_cancel(&s->purge);
	while ((st = TAILQ_FIRST(&s->streams)) != NULL) {
		struct evhttp_connection *evcon = evhttp_request_get_connection(st->req);

		if (evcon != NULL)
			evhttp_connection_set_closecb(evcon, NULL, NULL);
		sse_detach(st);
		sse_destroy(st);
	}
}

void
sse_free(struct sse *s)
{
	if (s == NULL)
		return;
	smap_free(s->groups, free);
	if (s->w->id == 0) {
		smap_free(s->shared->counts, NULL);
		pthread_mutex_destroy(&s->shared->lock);
		free(s->shared);
	}
	free(s);
}

void
sse_metrics(struct evbuffer *out, struct worker_set *set)
{
	unsigned long long opened = 0, sent = 0, slow = 0, refused = 0, fails = 0, purged = 0;
	long long open = 0;

	for (int i = 0; i < set->n; i++) {
		struct sse *s = set->workers[i].svc[SERVICE_EVENTS];

		open += atomic_load(&s->open);
		opened += atomic_load(&s->opened);
		sent += atomic_load(&s->sent);
		slow += atomic_load(&s->slow);
		refused += atomic_load(&s->refused);
		fails += atomic_load(&s->failures);
		purged += atomic_load(&s->purged);
	}
	evbuffer_add_printf(out,
	    "# HELP orderflow_event_streams Open GET /api/events streams.\n"
	    "# TYPE orderflow_event_streams gauge\norderflow_event_streams %lld\n"
	    "# HELP orderflow_event_streams_opened_total Event streams opened.\n"
	    "# TYPE orderflow_event_streams_opened_total counter\n"
	    "orderflow_event_streams_opened_total %llu\n"
	    "# HELP orderflow_event_streams_refused_total Streams refused by events.max_streams or "
	    "events.max_streams_per_creator.\n"
	    "# TYPE orderflow_event_streams_refused_total counter\n"
	    "orderflow_event_streams_refused_total %llu\n"
	    "# HELP orderflow_event_streams_slow_total Streams dropped past events.max_buffer.\n"
	    "# TYPE orderflow_event_streams_slow_total counter\n"
	    "orderflow_event_streams_slow_total %llu\n"
	    "# HELP orderflow_events_sent_total Events written to streams.\n"
	    "# TYPE orderflow_events_sent_total counter\norderflow_events_sent_total %llu\n"
	    "# HELP orderflow_events_read_failures_total Event log reads that failed.\n"
	    "# TYPE orderflow_events_read_failures_total counter\n"
	    "orderflow_events_read_failures_total %llu\n"
	    "# HELP orderflow_events_purged_total Events deleted after events.retention.\n"
	    "# TYPE orderflow_events_purged_total counter\norderflow_events_purged_total %llu\n",
	    open, opened, refused, slow, sent, fails, purged);
}
