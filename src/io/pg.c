/*
 * pg: a worker's pool of nonblocking libpq connections in pipeline mode.
 *
 * Each connection moves DOWN -> CONNECTING -> SETUP -> IDLE <-> BUSY and
 * back to DOWN on any error; pg_conn_set_state is the only place that
 * changes it.  One timer per connection serves the state it is in: the
 * reconnect delay (DOWN), the connect timeout (CONNECTING, SETUP) or the
 * query timeout (BUSY).
 *
 * A batch's callback never runs inside pg_submit.  Its send can fail there
 * (pg_conn_send, pg_conn_flush), and losing a connection fails every batch
 * on it and, with none left up, the queue too; callers set state after
 * PG_OK, so a callback that ran first would find it not yet set, or act
 * on it after it is gone.  pg_conn_fail and pg_fail_queue therefore put
 * failed batches on the pool's failed list, oldest first, and one event
 * made active with event_active runs them on the next turn of the loop.
 * Failures found by I/O callbacks and timers take the same path, so there
 * is one order: a connection's batches fail in the order they were sent,
 * after its earlier batches' results, and before any batch on the
 * connection that replaces it (that needs at least a poll, and the active
 * event runs first).  pg_pool_close runs what is left before it returns.
 */
#include "config.h"

#include <event2/event.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>

#include "orderflow/config.h"
#include "orderflow/log.h"
#include "orderflow/pg.h"

enum pg_conn_state {
	PG_CONN_DOWN,		/* closed; the timer reconnects */
	PG_CONN_CONNECTING,	/* PQconnectPoll in progress */
	PG_CONN_SETUP,		/* connected; session settings and prepares in flight */
	PG_CONN_IDLE,		/* ready for a batch */
	PG_CONN_BUSY,		/* running the batches in c->sent */
};

/* Batches one connection may have in flight (see pg_idle_conn). */
#define PG_PIPELINE_DEPTH 4

static const char *const pg_state_names[] = { "down", "connecting", "setup", "idle", "busy" };

/* One statement of a batch, with its own copies of the parameters. */
struct pg_cmd {
	bool	prepared;	/* stmt names a prepared statement */
	char	*stmt;		/* statement name or SQL text */
	int	nparams;
	char	**values;	/* NULL entries are SQL NULL */
};

struct pg_batch {
	TAILQ_ENTRY(pg_batch) entry;	/* in the pool's wait queue */
	pg_batch_cb	*cb;
	void		*arg;
	struct pg_cmd	*cmds;
	int		ncmds, cap;
	PGresult	**results;	/* one per statement, filled while reading */
	int		cur;		/* statement whose results are being read */
	bool		cur_seen;	/* a result of cur has arrived */
	char		*error;		/* first error, NULL on success */
	char		sqlstate[6];
	int		syncs;		/* syncs still expected (SETUP sends two) */
};

TAILQ_HEAD(pg_batch_list, pg_batch);

/* A prepared statement every connection gets during SETUP. */
struct pg_stmt {
	char	*name;
	char	*sql;
};

struct pg_conn {
	struct pg_pool	*pool;
	int		idx;		/* position in the pool, for logs */
	PGconn		*conn;
	enum pg_conn_state state;
	int		fd;		/* socket the events watch, -1 when none */
	struct event	*rd;		/* persistent read readiness */
	struct event	*wr;		/* write readiness while output is pending */
	struct event	*timer;		/* meaning depends on state, see top */
	struct pg_batch_list sent;	/* in flight, oldest first (BUSY, or SETUP's one) */
	int		nsent;
	int64_t		backoff;	/* next reconnect delay, ms */
	bool		tried;		/* first connect attempt finished */
	bool		was_up;		/* reached IDLE since the last failure */
};

struct pg_pool {
	struct event_base *base;
	char		*conninfo;
	int		size;
	struct pg_conn	*conns;
	struct pg_stmt	*stmts;
	int		nstmts;
	struct pg_batch_list queue;	/* batches waiting for an idle connection */
	int		nqueue;
	struct pg_batch_list failed;	/* failed batches whose callbacks wait, oldest first */
	int		nfailed;
	struct event	*failed_ev;	/* runs them on the next loop turn (pg_pool_on_failed) */
	int64_t		max_wait;
	int64_t		connect_timeout, query_timeout;	/* ms */
	int64_t		reconnect_min, reconnect_max;	/* ms */
	bool		closing;	/* pg_pool_close has run: refuse everything */
	struct pg_stats	stats;
};

static void pg_conn_connect(struct pg_conn *c);
static void pg_conn_fail(struct pg_conn *c, const char *why);
static void pg_dispatch(struct pg_pool *p);

static void
pg_timer_add(struct event *ev, int64_t ms)
{
	struct timeval tv = { .tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000 };

	evtimer_add(ev, &tv);
}

/* Recount the figures other threads read; pools are small, so a scan is cheap. */
static void
pg_pool_count(struct pg_pool *p)
{
	int up = 0, busy = 0, connecting = 0;

	for (int i = 0; i < p->size; i++) {
		enum pg_conn_state s = p->conns[i].state;

		up += s == PG_CONN_IDLE || s == PG_CONN_BUSY;
		busy += s == PG_CONN_BUSY;
		connecting += s == PG_CONN_CONNECTING || s == PG_CONN_SETUP;
	}
	atomic_store_explicit(&p->stats.up, up, memory_order_relaxed);
	atomic_store_explicit(&p->stats.busy, busy, memory_order_relaxed);
	atomic_store_explicit(&p->stats.connecting, connecting, memory_order_relaxed);
	atomic_store_explicit(&p->stats.waiting, p->nqueue, memory_order_relaxed);
}

static void
pg_conn_set_state(struct pg_conn *c, enum pg_conn_state state)
{
	if (c->state != state)
		log_debug("postgres connection state", "conn=%d from=%s to=%s", c->idx,
		    pg_state_names[c->state], pg_state_names[state]);
	c->state = state;
	pg_pool_count(c->pool);
}

struct pg_batch *
pg_batch_new(pg_batch_cb *cb, void *arg)
{
	struct pg_batch *b = xcalloc(1, sizeof(*b));

	b->cb = cb;
	b->arg = arg;
	return b;
}

void
pg_batch_add(struct pg_batch *b, bool prepared, const char *stmt, int nparams,
    const char *const *values)
{
	struct pg_cmd *cmd;

	if (b->ncmds == b->cap) {
		b->cap = b->cap ? b->cap * 2 : 4;
		b->cmds = xrealloc(b->cmds, (size_t)b->cap * sizeof(*b->cmds));
	}
	cmd = &b->cmds[b->ncmds++];
	cmd->prepared = prepared;
	cmd->stmt = xstrdup(stmt);
	cmd->nparams = nparams;
	cmd->values = nparams > 0 ? xcalloc((size_t)nparams, sizeof(char *)) : NULL;
	for (int i = 0; i < nparams; i++)
		cmd->values[i] = values[i] != NULL ? xstrdup(values[i]) : NULL;
}

static void
pg_batch_free(struct pg_batch *b)
{
	for (int i = 0; i < b->ncmds; i++) {
		for (int j = 0; j < b->cmds[i].nparams; j++)
			free(b->cmds[i].values[j]);
		free(b->cmds[i].values);
		free(b->cmds[i].stmt);
		if (b->results != NULL)
			PQclear(b->results[i]);
	}
	free(b->cmds);
	free(b->results);
	free(b->error);
	free(b);
}

const char *
pg_batch_error(const struct pg_batch *b)
{
	return b->error;
}

PGresult *
pg_batch_result(const struct pg_batch *b, int i)
{
	return i >= 0 && i < b->ncmds && b->results != NULL ? b->results[i] : NULL;
}

const char *
pg_batch_sqlstate(const struct pg_batch *b)
{
	return b->sqlstate;
}

/* Run the callback of a finished batch, count it, and free it. */
static void
pg_batch_finish(struct pg_pool *p, struct pg_batch *b, const char *error)
{
	if (error != NULL && b->error == NULL)
		b->error = xstrdup(error);
	if (b->error != NULL) {
		b->error[strcspn(b->error, "\n")] = '\0';
		atomic_fetch_add_explicit(&p->stats.errors, 1, memory_order_relaxed);
	}
	atomic_fetch_add_explicit(&p->stats.batches, 1, memory_order_relaxed);
	if (b->cb != NULL)
		b->cb(b, b->arg);
	pg_batch_free(b);
}

/* Fail a batch without calling back yet: pg_pool_on_failed will (see top). */
static void
pg_batch_defer(struct pg_pool *p, struct pg_batch *b, const char *error)
{
	if (b->error == NULL)
		b->error = xstrdup(error);
	TAILQ_INSERT_TAIL(&p->failed, b, entry);
	p->nfailed++;
	event_active(p->failed_ev, EV_TIMEOUT, 0);
}

/* Run the callbacks of up to n deferred failures, oldest first. */
static void
pg_pool_finish_failed(struct pg_pool *p, int n)
{
	struct pg_batch *b;

	while (n-- > 0 && (b = TAILQ_FIRST(&p->failed)) != NULL) {
		TAILQ_REMOVE(&p->failed, b, entry);
		p->nfailed--;
		pg_batch_finish(p, b, NULL);
	}
}

static void
pg_pool_on_failed(evutil_socket_t fd, short what, void *arg)
{
	struct pg_pool *p = arg;

	/*
	 * Only those failed before this turn: one whose callback submits again
	 * into a failing pool hears back on the next turn, not in a loop here.
	 */
	pg_pool_finish_failed(p, p->nfailed);
}

/* Point the read/write events at the connection's current socket. */
static void
pg_conn_watch(struct pg_conn *c, bool want_read, bool want_write);

static void
pg_conn_on_io(evutil_socket_t fd, short what, void *arg);

static void
pg_conn_close(struct pg_conn *c)
{
	if (c->rd != NULL)
		event_free(c->rd);
	if (c->wr != NULL)
		event_free(c->wr);
	c->rd = c->wr = NULL;
	c->fd = -1;
	if (c->conn != NULL)
		PQfinish(c->conn);
	c->conn = NULL;
	evtimer_del(c->timer);
}

static void
pg_conn_watch(struct pg_conn *c, bool want_read, bool want_write)
{
	int fd = PQsocket(c->conn);

	if (fd != c->fd) {
		if (c->rd != NULL)
			event_free(c->rd);
		if (c->wr != NULL)
			event_free(c->wr);
		c->fd = fd;
		c->rd = event_new(c->pool->base, fd, EV_READ | EV_PERSIST, pg_conn_on_io, c);
		c->wr = event_new(c->pool->base, fd, EV_WRITE | EV_PERSIST, pg_conn_on_io, c);
	}
	if (want_read)
		event_add(c->rd, NULL);
	else
		event_del(c->rd);
	if (want_write)
		event_add(c->wr, NULL);
	else
		event_del(c->wr);
}

/* Push queued output; watch for writability only while some remains. */
static bool
pg_conn_flush(struct pg_conn *c)
{
	int r = PQflush(c->conn);

	if (r < 0) {
		pg_conn_fail(c, PQerrorMessage(c->conn));
		return false;
	}
	pg_conn_watch(c, true, r == 1);
	return true;
}

/* Queue every statement of b and one sync on the connection. */
static bool
pg_conn_send(struct pg_conn *c, struct pg_batch *b)
{
	b->results = xcalloc((size_t)(b->ncmds ? b->ncmds : 1), sizeof(PGresult *));
	TAILQ_INSERT_TAIL(&c->sent, b, entry);
	c->nsent++;
	for (int i = 0; i < b->ncmds; i++) {
		struct pg_cmd *cmd = &b->cmds[i];
		const char *const *vals = (const char *const *)cmd->values;
		int ok;

		if (cmd->prepared)
			ok = PQsendQueryPrepared(c->conn, cmd->stmt, cmd->nparams, vals, NULL, NULL, 0);
		else
			ok = PQsendQueryParams(c->conn, cmd->stmt, cmd->nparams, NULL, vals, NULL, NULL, 0);
		if (!ok) {
			pg_conn_fail(c, PQerrorMessage(c->conn));
			return false;
		}
	}
	if (!PQpipelineSync(c->conn)) {
		pg_conn_fail(c, PQerrorMessage(c->conn));
		return false;
	}
	return pg_conn_flush(c);
}

/* The query timeout runs for the oldest batch in flight: the one the server is on. */
static void
pg_conn_start_batch(struct pg_conn *c, struct pg_batch *b)
{
	bool first = c->nsent == 0;

	pg_conn_set_state(c, PG_CONN_BUSY);
	if (pg_conn_send(c, b) && first)
		pg_timer_add(c->timer, c->pool->query_timeout);
}

/* Session settings and every registered statement, as one pipeline. */
static void
pg_conn_setup(struct pg_conn *c)
{
	struct pg_pool *p = c->pool;
	struct pg_batch *b = pg_batch_new(NULL, NULL);
	char sql[64];

	PQsetnonblocking(c->conn, 1);
	if (!PQenterPipelineMode(c->conn)) {
		pg_batch_free(b);
		pg_conn_fail(c, PQerrorMessage(c->conn));
		return;
	}
	snprintf(sql, sizeof(sql), "SET statement_timeout = %lld", (long long)p->query_timeout);
	pg_batch_add(b, false, sql, 0, NULL);
	/*
	 * JIT compiles every execution of a plan over jit_above_cost again: the
	 * dashboard's one-shot list statements over a large creator paid
	 * hundreds of milliseconds for it, for work that takes tens.
	 */
	pg_batch_add(b, false, "SET jit = off", 0, NULL);
	pg_conn_set_state(c, PG_CONN_SETUP);
	if (!pg_conn_send(c, b))
		return;
	for (int i = 0; i < p->nstmts; i++) {
		if (!PQsendPrepare(c->conn, p->stmts[i].name, p->stmts[i].sql, 0, NULL)) {
			pg_conn_fail(c, PQerrorMessage(c->conn));
			return;
		}
	}
	/* The prepares ride in the same round trip, after the first sync. */
	b->syncs = p->nstmts > 0 ? 2 : 1;
	if (p->nstmts > 0 && !PQpipelineSync(c->conn))
		pg_conn_fail(c, PQerrorMessage(c->conn));
	else if (p->nstmts > 0)
		pg_conn_flush(c);
}

/* The SETUP pipeline ended (one sync per part): go IDLE or fail. */
static void
pg_conn_setup_sync(struct pg_conn *c)
{
	struct pg_batch *b = TAILQ_FIRST(&c->sent);

	if (b->error != NULL) {
		char *why = xasprintf("session setup failed: %s", b->error);

		pg_conn_fail(c, why);
		free(why);
		return;
	}
	if (--b->syncs > 0)
		return;
	TAILQ_REMOVE(&c->sent, b, entry);
	c->nsent--;
	pg_batch_free(b);
	evtimer_del(c->timer);
	c->backoff = c->pool->reconnect_min;
	if (!c->was_up || !c->tried)
		log_info("postgres connected", "conn=%d", c->idx);
	c->was_up = true;
	c->tried = true;
	pg_conn_set_state(c, PG_CONN_IDLE);
	pg_dispatch(c->pool);
}

static void
pg_conn_batch_done(struct pg_conn *c)
{
	struct pg_batch *b = TAILQ_FIRST(&c->sent);

	TAILQ_REMOVE(&c->sent, b, entry);
	if (--c->nsent > 0) {
		pg_timer_add(c->timer, c->pool->query_timeout);
	} else {
		evtimer_del(c->timer);
		pg_conn_set_state(c, PG_CONN_IDLE);
	}
	pg_batch_finish(c->pool, b, NULL);
	pg_dispatch(c->pool);
}

/* Store one result in the batch; the first error becomes the batch error. */
static void
pg_batch_take(struct pg_batch *b, PGresult *r)
{
	ExecStatusType st = PQresultStatus(r);

	if (b->error == NULL && (st == PGRES_FATAL_ERROR || st == PGRES_BAD_RESPONSE ||
	    st == PGRES_NONFATAL_ERROR)) {
		const char *code = PQresultErrorField(r, PG_DIAG_SQLSTATE);

		b->error = xstrdup(PQresultErrorMessage(r));
		snprintf(b->sqlstate, sizeof(b->sqlstate), "%s", code != NULL ? code : "");
	} else if (b->error == NULL && st == PGRES_PIPELINE_ABORTED) {
		b->error = xstrdup("pipeline aborted");
	}
	if (b->results != NULL && b->cur < b->ncmds && b->results[b->cur] == NULL)
		b->results[b->cur] = r;
	else
		PQclear(r);
	b->cur_seen = true;
}

/* Read every result that is complete; a sync ends a batch. */
static void
pg_conn_read(struct pg_conn *c)
{
	while (c->conn != NULL && !PQisBusy(c->conn)) {
		PGresult *r = PQgetResult(c->conn);
		struct pg_batch *b = TAILQ_FIRST(&c->sent);

		if (r == NULL) {
			if (b == NULL || !b->cur_seen)
				break;
			b->cur++;
			b->cur_seen = false;
			continue;
		}
		if (PQresultStatus(r) == PGRES_PIPELINE_SYNC) {
			PQclear(r);
			if (b == NULL)
				continue;
			b->cur_seen = false;
			if (c->state == PG_CONN_SETUP)
				pg_conn_setup_sync(c);
			else
				pg_conn_batch_done(c);
			continue;
		}
		if (b == NULL) {
			/* e.g. the server's FATAL before it closes: the socket error follows. */
			log_debug("postgres unsolicited result", "conn=%d error=%s", c->idx,
			    log_quote(PQresultErrorMessage(r)));
			PQclear(r);
			continue;
		}
		pg_batch_take(b, r);
	}
	if (c->conn != NULL && PQstatus(c->conn) == CONNECTION_BAD)
		pg_conn_fail(c, PQerrorMessage(c->conn));
}

static void
pg_conn_poll(struct pg_conn *c)
{
	switch (PQconnectPoll(c->conn)) {
	case PGRES_POLLING_READING:
		pg_conn_watch(c, true, false);
		break;
	case PGRES_POLLING_WRITING:
		pg_conn_watch(c, false, true);
		break;
	case PGRES_POLLING_OK:
		pg_conn_setup(c);
		break;
	case PGRES_POLLING_FAILED:
	default:
		pg_conn_fail(c, PQerrorMessage(c->conn));
		break;
	}
}

static void
pg_conn_on_io(evutil_socket_t fd, short what, void *arg)
{
	struct pg_conn *c = arg;

	if (c->state == PG_CONN_CONNECTING) {
		pg_conn_poll(c);
		return;
	}
	if ((what & EV_WRITE) && !pg_conn_flush(c))
		return;
	if (what & EV_READ) {
		if (!PQconsumeInput(c->conn)) {
			pg_conn_fail(c, PQerrorMessage(c->conn));
			return;
		}
		pg_conn_read(c);
	}
}

static void
pg_conn_on_timer(evutil_socket_t fd, short what, void *arg)
{
	struct pg_conn *c = arg;
	char why[96];

	switch (c->state) {
	case PG_CONN_DOWN:
		pg_conn_connect(c);
		break;
	case PG_CONN_CONNECTING:
	case PG_CONN_SETUP:
		snprintf(why, sizeof(why), "connect timeout after %lld ms",
		    (long long)c->pool->connect_timeout);
		pg_conn_fail(c, why);
		break;
	case PG_CONN_BUSY:
		snprintf(why, sizeof(why), "query timeout after %lld ms",
		    (long long)c->pool->query_timeout);
		pg_conn_fail(c, why);
		break;
	case PG_CONN_IDLE:
		break;
	}
}

static void
pg_notice(void *arg, const char *message)
{
	log_debug("postgres notice", "text=%s", log_quote(message));
}

static void
pg_conn_connect(struct pg_conn *c)
{
	const char *keys[] = { "dbname", "fallback_application_name", NULL };
	const char *vals[] = { c->pool->conninfo, "orderflowd", NULL };

	c->conn = PQconnectStartParams(keys, vals, 1);
	if (c->conn == NULL || PQstatus(c->conn) == CONNECTION_BAD) {
		pg_conn_set_state(c, PG_CONN_CONNECTING);
		pg_conn_fail(c, c->conn != NULL ? PQerrorMessage(c->conn) : "out of memory");
		return;
	}
	PQsetNoticeProcessor(c->conn, pg_notice, c);
	pg_conn_set_state(c, PG_CONN_CONNECTING);
	pg_timer_add(c->timer, c->pool->connect_timeout);
	pg_conn_watch(c, false, true);
}

/* Fail every queued batch: with no connection up, waiting helps no one. */
static void
pg_fail_queue(struct pg_pool *p, const char *why)
{
	struct pg_batch *b;

	while ((b = TAILQ_FIRST(&p->queue)) != NULL) {
		TAILQ_REMOVE(&p->queue, b, entry);
		p->nqueue--;
		pg_batch_defer(p, b, why);
	}
	pg_pool_count(p);
}

static void
pg_conn_fail(struct pg_conn *c, const char *why)
{
	struct pg_pool *p = c->pool;
	struct pg_batch_list lost = TAILQ_HEAD_INITIALIZER(lost);
	struct pg_batch *b;
	enum pg_conn_state was = c->state;
	char *reason = xstrdup(why != NULL && why[0] != '\0' ? why : "connection closed");

	reason[strcspn(reason, "\n")] = '\0';
	TAILQ_CONCAT(&lost, &c->sent, entry);
	c->nsent = 0;
	pg_conn_close(c);
	pg_conn_set_state(c, PG_CONN_DOWN);
	if (p->closing)
		log_debug("postgres connection closed", "conn=%d", c->idx);
	else if (c->was_up)
		log_warn("postgres connection lost", "conn=%d reason=%s", c->idx, log_quote(reason));
	else if (!c->tried)
		log_warn("postgres connect failed", "conn=%d reason=%s", c->idx, log_quote(reason));
	else
		log_debug("postgres connect failed", "conn=%d reason=%s", c->idx, log_quote(reason));
	c->was_up = false;
	c->tried = true;
	if (!p->closing) {
		pg_timer_add(c->timer, util_jitter(c->backoff));
		c->backoff = c->backoff * 2 > p->reconnect_max ? p->reconnect_max : c->backoff * 2;
	}
	while ((b = TAILQ_FIRST(&lost)) != NULL) {
		TAILQ_REMOVE(&lost, b, entry);
		if (was == PG_CONN_SETUP)
			pg_batch_free(b);
		else
			pg_batch_defer(p, b, reason);
	}
	if (atomic_load(&p->stats.up) == 0)
		pg_fail_queue(p, "database unavailable");
	free(reason);
}

/*
 * Where a batch goes next: an idle connection, else the busy one with the
 * fewest batches in flight, up to PG_PIPELINE_DEPTH.  Each batch ends in
 * its own sync, so an error aborts only the rest of that batch; what the
 * pipeline saves is the backend's and our wake-ups between batches, which
 * dominate short reads on a loaded machine.
 */
static struct pg_conn *
pg_idle_conn(struct pg_pool *p)
{
	struct pg_conn *best = NULL;

	for (int i = 0; i < p->size; i++) {
		struct pg_conn *c = &p->conns[i];

		if (c->state == PG_CONN_IDLE)
			return c;
		if (c->state == PG_CONN_BUSY && c->nsent < PG_PIPELINE_DEPTH &&
		    (best == NULL || c->nsent < best->nsent))
			best = c;
	}
	return best;
}

/* Hand queued batches to idle connections. */
static void
pg_dispatch(struct pg_pool *p)
{
	struct pg_conn *c;
	struct pg_batch *b;

	while ((b = TAILQ_FIRST(&p->queue)) != NULL && (c = pg_idle_conn(p)) != NULL) {
		TAILQ_REMOVE(&p->queue, b, entry);
		p->nqueue--;
		pg_conn_start_batch(c, b);
	}
	pg_pool_count(p);
}

enum pg_submit
pg_submit(struct pg_pool *p, struct pg_batch *b)
{
	struct pg_conn *c;

	if (!p->closing && (c = pg_idle_conn(p)) != NULL) {
		pg_conn_start_batch(c, b);
		return PG_OK;
	}
	if (p->closing || atomic_load(&p->stats.up) == 0) {
		pg_batch_free(b);
		return PG_EDOWN;
	}
	if (p->nqueue >= p->max_wait) {
		pg_batch_free(b);
		return PG_EFULL;
	}
	TAILQ_INSERT_TAIL(&p->queue, b, entry);
	p->nqueue++;
	pg_pool_count(p);
	return PG_OK;
}

struct pg_pool *
pg_pool_new(struct event_base *base, const struct config *cfg)
{
	struct pg_pool *p = xcalloc(1, sizeof(*p));

	p->base = base;
	p->conninfo = xstrdup(cfg->postgres.conninfo);
	p->size = (int)cfg->postgres.pool_size;
	p->conns = xcalloc((size_t)p->size, sizeof(*p->conns));
	TAILQ_INIT(&p->queue);
	TAILQ_INIT(&p->failed);
	p->failed_ev = event_new(base, -1, 0, pg_pool_on_failed, p);
	pg_pool_reconfigure(p, cfg);
	for (int i = 0; i < p->size; i++) {
		struct pg_conn *c = &p->conns[i];

		c->pool = p;
		c->idx = i;
		c->fd = -1;
		c->state = PG_CONN_DOWN;
		TAILQ_INIT(&c->sent);
		c->backoff = p->reconnect_min;
		c->timer = evtimer_new(base, pg_conn_on_timer, c);
	}
	return p;
}

void
pg_pool_prepare(struct pg_pool *p, const char *name, const char *sql)
{
	p->stmts = xrealloc(p->stmts, (size_t)(p->nstmts + 1) * sizeof(*p->stmts));
	p->stmts[p->nstmts].name = xstrdup(name);
	p->stmts[p->nstmts].sql = xstrdup(sql);
	p->nstmts++;
}

void
pg_pool_start(struct pg_pool *p)
{
	for (int i = 0; i < p->size; i++)
		pg_conn_connect(&p->conns[i]);
}

void
pg_pool_reconfigure(struct pg_pool *p, const struct config *cfg)
{
	p->max_wait = cfg->postgres.max_wait_queue;
	p->connect_timeout = cfg->postgres.connect_timeout;
	p->query_timeout = cfg->postgres.query_timeout;
	p->reconnect_min = cfg->postgres.reconnect_min;
	p->reconnect_max = cfg->postgres.reconnect_max;
}

void
pg_pool_close(struct pg_pool *p)
{
	if (p->closing)
		return;
	p->closing = true;
	for (int i = 0; i < p->size; i++) {
		struct pg_conn *c = &p->conns[i];

		if (c->state != PG_CONN_DOWN)
			pg_conn_fail(c, "shutting down");
		evtimer_del(c->timer);
	}
	pg_fail_queue(p, "shutting down");
	/*
	 * The owner frees what the callbacks use right after this returns, so
	 * they all run now, those deferred before included, in order.
	 */
	event_del(p->failed_ev);
	pg_pool_finish_failed(p, INT_MAX);
}

void
pg_pool_free(struct pg_pool *p)
{
	if (p == NULL)
		return;
	pg_pool_close(p);
	event_free(p->failed_ev);
	for (int i = 0; i < p->size; i++)
		event_free(p->conns[i].timer);
	for (int i = 0; i < p->nstmts; i++) {
		free(p->stmts[i].name);
		free(p->stmts[i].sql);
	}
	free(p->stmts);
	free(p->conns);
	free(p->conninfo);
	free(p);
}

const struct pg_stats *
pg_pool_stats(const struct pg_pool *p)
{
	return &p->stats;
}

bool
pg_pool_tried(const struct pg_pool *p)
{
	for (int i = 0; i < p->size; i++)
		if (!p->conns[i].tried)
			return false;
	return true;
}
