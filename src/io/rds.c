/*
 * rds: a worker's hiredis async context with reconnect and liveness PINGs.
 *
 * hiredis frees its context itself after the disconnect callback, and on a
 * failed connect; r->ac is cleared in those callbacks, and every callback
 * checks that the context it is told about is still r->ac, so a late
 * callback from an old context is ignored.
 */
#include "config.h"

#include <event2/event.h>
#include <hiredis/adapters/libevent.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "orderflow/config.h"
#include "orderflow/log.h"
#include "orderflow/rds.h"

#define RDS_PING_EVERY_MS 1000

enum rds_state {
	RDS_DOWN,		/* no context; the timer reconnects */
	RDS_CONNECTING,		/* TCP/unix connect in progress */
	RDS_HANDSHAKE,		/* AUTH/SELECT/PING sent, waiting for the PING */
	RDS_UP,			/* connected and answering */
};

static const char *const rds_state_names[] = { "down", "connecting", "handshake", "up" };

struct rds {
	struct event_base *base;
	redisAsyncContext *ac;
	enum rds_state	state;
	atomic_bool	up;		/* state == RDS_UP, for other threads */
	atomic_bool	tried;
	atomic_llong	ping_us;	/* last PING round trip */
	struct event	*timer;		/* reconnect delay or connect deadline */
	struct event	*pinger;	/* periodic liveness PING */
	int64_t		ping_sent;	/* mono us of the outstanding PING, 0 = none */
	int64_t		backoff;	/* next reconnect delay, ms */
	bool		was_up;
	/* settings */
	char		*host, *socket, *password;
	int		port, db;
	int64_t		connect_timeout, command_timeout, reconnect_min, reconnect_max;
};

static void rds_connect(struct rds *r);

static void
rds_timer_add(struct event *ev, int64_t ms)
{
	struct timeval tv = { .tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000 };

	evtimer_add(ev, &tv);
}

static void
rds_set_state(struct rds *r, enum rds_state state)
{
	if (r->state != state)
		log_debug("redis state", "from=%s to=%s", rds_state_names[r->state],
		    rds_state_names[state]);
	r->state = state;
	atomic_store(&r->up, state == RDS_UP);
}

/* Forget the context (hiredis frees it) and schedule the next attempt. */
static void
rds_lost(struct rds *r, const char *why)
{
	if (r->was_up)
		log_warn("redis connection lost", "reason=%s", log_quote(why));
	else if (!atomic_load(&r->tried))
		log_warn("redis connect failed", "reason=%s", log_quote(why));
	else
		log_debug("redis connect failed", "reason=%s", log_quote(why));
	r->was_up = false;
	atomic_store(&r->tried, true);
	r->ac = NULL;
	r->ping_sent = 0;
	rds_set_state(r, RDS_DOWN);
	evtimer_del(r->timer);
	rds_timer_add(r->timer, util_jitter(r->backoff));
	r->backoff = r->backoff * 2 > r->reconnect_max ? r->reconnect_max : r->backoff * 2;
}

/* Tear down a context we gave up on; hiredis calls the disconnect callback. */
static void
rds_drop(struct rds *r, const char *why)
{
	redisAsyncContext *ac = r->ac;

	rds_lost(r, why);
	if (ac != NULL)
		redisAsyncFree(ac);
}

static void
rds_on_ping(redisAsyncContext *ac, void *reply, void *arg)
{
	struct rds *r = ac->data;
	redisReply *rep = reply;

	if (r == NULL || ac != r->ac)
		return;
	if (rep == NULL || rep->type == REDIS_REPLY_ERROR) {
		/* A NULL reply means the context is going away; the disconnect callback handles it. */
		if (rep != NULL)
			rds_drop(r, rep->str);
		return;
	}
	if (r->ping_sent != 0)
		atomic_store(&r->ping_us, util_mono_us() - r->ping_sent);
	r->ping_sent = 0;
	if (r->state == RDS_HANDSHAKE) {
		evtimer_del(r->timer);
		r->backoff = r->reconnect_min;
		log_info("redis connected", "%s", "");
		r->was_up = true;
		atomic_store(&r->tried, true);
		rds_set_state(r, RDS_UP);
	}
}

/* AUTH and SELECT replies: an error ends the connection. */
static void
rds_on_handshake(redisAsyncContext *ac, void *reply, void *arg)
{
	struct rds *r = ac->data;
	redisReply *rep = reply;

	if (r == NULL || ac != r->ac || rep == NULL)
		return;
	if (rep->type == REDIS_REPLY_ERROR)
		rds_drop(r, rep->str);
}

static void
rds_send_ping(struct rds *r)
{
	r->ping_sent = util_mono_us();
	if (redisAsyncCommand(r->ac, rds_on_ping, NULL, "PING") != REDIS_OK)
		rds_drop(r, "cannot send PING");
}

static void
rds_on_connect(const redisAsyncContext *cac, int status)
{
	redisAsyncContext *ac = (redisAsyncContext *)cac;
	struct rds *r = ac->data;

	if (r == NULL || ac != r->ac)
		return;
	if (status != REDIS_OK) {
		/* hiredis frees the context after this callback. */
		rds_lost(r, ac->errstr[0] ? ac->errstr : "connect failed");
		return;
	}
	rds_set_state(r, RDS_HANDSHAKE);
	if (r->password[0] != '\0' &&
	    redisAsyncCommand(ac, rds_on_handshake, NULL, "AUTH %s", r->password) != REDIS_OK) {
		rds_drop(r, "cannot send AUTH");
		return;
	}
	if (r->db != 0 &&
	    redisAsyncCommand(ac, rds_on_handshake, NULL, "SELECT %d", r->db) != REDIS_OK) {
		rds_drop(r, "cannot send SELECT");
		return;
	}
	rds_send_ping(r);
}

static void
rds_on_disconnect(const redisAsyncContext *cac, int status)
{
	redisAsyncContext *ac = (redisAsyncContext *)cac;
	struct rds *r = ac->data;

	if (r == NULL || ac != r->ac)
		return;
	rds_lost(r, ac->errstr[0] ? ac->errstr : "connection closed");
}

static void
rds_connect(struct rds *r)
{
	redisAsyncContext *ac;

	if (r->socket[0] != '\0')
		ac = redisAsyncConnectUnix(r->socket);
	else
		ac = redisAsyncConnect(r->host, r->port);
	if (ac == NULL || ac->err) {
		char *why = xstrdup(ac != NULL ? ac->errstr : "out of memory");

		if (ac != NULL)
			redisAsyncFree(ac);
		r->ac = NULL;
		rds_lost(r, why);
		free(why);
		return;
	}
	ac->data = r;
	r->ac = ac;
	redisLibeventAttach(ac, r->base);
	redisAsyncSetConnectCallback(ac, rds_on_connect);
	redisAsyncSetDisconnectCallback(ac, rds_on_disconnect);
	rds_set_state(r, RDS_CONNECTING);
	rds_timer_add(r->timer, r->connect_timeout);
}

static void
rds_on_timer(evutil_socket_t fd, short what, void *arg)
{
	struct rds *r = arg;

	if (r->state == RDS_DOWN)
		rds_connect(r);
	else if (r->state != RDS_UP)
		rds_drop(r, "connect timeout");
}

/* Every second: PING, or give up on a server that did not answer the last one. */
static void
rds_on_pinger(evutil_socket_t fd, short what, void *arg)
{
	struct rds *r = arg;

	if (r->state != RDS_UP)
		return;
	if (r->ping_sent != 0) {
		if (util_mono_us() - r->ping_sent > r->command_timeout * 1000)
			rds_drop(r, "PING timeout");
		return;
	}
	rds_send_ping(r);
}

struct rds *
rds_new(struct event_base *base, const struct config *cfg)
{
	struct rds *r = xcalloc(1, sizeof(*r));
	struct timeval every = { .tv_sec = 0, .tv_usec = RDS_PING_EVERY_MS * 1000 };

	r->base = base;
	r->host = xstrdup(cfg->redis.host);
	r->socket = xstrdup(cfg->redis.socket);
	r->password = xstrdup(cfg->redis.password);
	r->port = (int)cfg->redis.port;
	r->db = (int)cfg->redis.db;
	atomic_init(&r->ping_us, -1);
	rds_reconfigure(r, cfg);
	r->backoff = r->reconnect_min;
	r->timer = evtimer_new(base, rds_on_timer, r);
	r->pinger = event_new(base, -1, EV_PERSIST, rds_on_pinger, r);
	if (RDS_PING_EVERY_MS >= 1000) {
		every.tv_sec = RDS_PING_EVERY_MS / 1000;
		every.tv_usec = (RDS_PING_EVERY_MS % 1000) * 1000;
	}
	event_add(r->pinger, &every);
	return r;
}

void
rds_start(struct rds *r)
{
	rds_connect(r);
}

void
rds_reconfigure(struct rds *r, const struct config *cfg)
{
	r->connect_timeout = cfg->redis.connect_timeout;
	r->command_timeout = cfg->redis.command_timeout;
	r->reconnect_min = cfg->redis.reconnect_min;
	r->reconnect_max = cfg->redis.reconnect_max;
}

void
rds_close(struct rds *r)
{
	redisAsyncContext *ac = r->ac;

	r->ac = NULL;
	rds_set_state(r, RDS_DOWN);
	evtimer_del(r->timer);
	event_del(r->pinger);
	if (ac != NULL) {
		/* Callbacks still run with NULL replies, but no longer see us. */
		redisAsyncFree(ac);
	}
}

void
rds_free(struct rds *r)
{
	if (r == NULL)
		return;
	rds_close(r);
	event_free(r->timer);
	event_free(r->pinger);
	free(r->host);
	free(r->socket);
	free(r->password);
	free(r);
}

/* A caller's command, so its callback gets the reply, not hiredis' arguments. */
struct rds_call {
	rds_cb	*cb;
	void	*arg;
};

static void
rds_on_reply(redisAsyncContext *ac, void *reply, void *arg)
{
	struct rds_call *call = arg;

	call->cb(reply, call->arg);
	free(call);
}

bool
rds_command(struct rds *r, rds_cb *cb, void *arg, const char *fmt, ...)
{
	struct rds_call *call;
	va_list ap;
	int rc;

	if (r->state != RDS_UP)
		return false;
	call = xmalloc(sizeof(*call));
	call->cb = cb;
	call->arg = arg;
	va_start(ap, fmt);
	rc = redisvAsyncCommand(r->ac, rds_on_reply, call, fmt, ap);
	va_end(ap);
	if (rc != REDIS_OK) {
		free(call);
		return false;
	}
	return true;
}

bool
rds_connected(const struct rds *r)
{
	return atomic_load(&((struct rds *)r)->up);
}

bool
rds_tried(const struct rds *r)
{
	return atomic_load(&((struct rds *)r)->tried);
}

int64_t
rds_ping_us(const struct rds *r)
{
	return atomic_load(&((struct rds *)r)->ping_us);
}
