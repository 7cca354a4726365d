/*
 * worker: thread start-up, the inbox, the heartbeat, reload and drain.
 *
 * Lock rules: w->lock guards only w->inbox.  Everything else in struct
 * worker belongs to the worker's thread, except the atomics, which other
 * threads only read.
 */
#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/event.h>
#include <event2/thread.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "orderflow/config.h"
#include "orderflow/httpd.h"
#include "orderflow/log.h"
#include "orderflow/pg.h"
#include "orderflow/rds.h"
#include "orderflow/service.h"
#include "orderflow/twheel.h"
#include "orderflow/worker.h"

static _Thread_local struct worker *worker_current;

struct worker *
worker_self(void)
{
	return worker_current;
}

void
worker_post(struct worker *w, worker_fn *fn, void *arg)
{
	worker_post_owned(w, fn, NULL, arg);
}

void
worker_post_owned(struct worker *w, worker_fn *fn, worker_fn *drop, void *arg)
{
	struct worker_msg *m = xmalloc(sizeof(*m));

	m->fn = fn;
	m->drop = drop;
	m->arg = arg;
	pthread_mutex_lock(&w->lock);
	TAILQ_INSERT_TAIL(&w->inbox, m, entry);
	pthread_mutex_unlock(&w->lock);
	event_active(w->wake, EV_READ, 0);
}

/* Run everything queued for this worker, in order. */
static void
worker_on_wake(evutil_socket_t fd, short what, void *arg)
{
	struct worker *w = arg;
	TAILQ_HEAD(, worker_msg) batch = TAILQ_HEAD_INITIALIZER(batch);
	struct worker_msg *m;

	pthread_mutex_lock(&w->lock);
	TAILQ_CONCAT(&batch, &w->inbox, entry);
	pthread_mutex_unlock(&w->lock);
	while ((m = TAILQ_FIRST(&batch)) != NULL) {
		TAILQ_REMOVE(&batch, m, entry);
		m->fn(w, m->arg);
		free(m);
	}
}

/* FNV-1a: stable across runs and cheap for 19-digit ids. */
struct worker *
worker_owner(struct worker_set *s, const char *key)
{
	uint32_t h = 2166136261u;

	for (const unsigned char *p = (const unsigned char *)key; *p != '\0'; p++)
		h = (h ^ *p) * 16777619u;
	return &s->workers[h % (uint32_t)s->n];
}

uint64_t
worker_now_ms(void)
{
	return (uint64_t)(util_mono_us() / 1000);
}

/* The wheel asks to run at expire_ms: one libevent timer, moved as asked. */
static void
worker_arm_wheel(uint64_t expire_ms, void *arg)
{
	struct worker *w = arg;
	uint64_t now = worker_now_ms(), ms = expire_ms > now ? expire_ms - now : 0;
	struct timeval tv = { .tv_sec = (time_t)(ms / 1000), .tv_usec = (suseconds_t)(ms % 1000) * 1000 };

	evtimer_add(w->wheel_ev, &tv);
}

static void
worker_on_wheel(evutil_socket_t fd, short what, void *arg)
{
	struct worker *w = arg;

	twheel_run(w->wheel, worker_now_ms());
}

static void
worker_on_tick(evutil_socket_t fd, short what, void *arg)
{
	struct worker *w = arg;
	int64_t now = util_mono_us(), last = atomic_load(&w->heartbeat_us);
	int64_t lag = now - last - WORKER_TICK_MS * 1000;

	atomic_store(&w->lag_us, lag > 0 ? lag : 0);
	atomic_store(&w->heartbeat_us, now);
	if (!atomic_load(&w->started) && pg_pool_tried(w->pg) && rds_tried(w->rds) &&
	    (atomic_load(&pg_pool_stats(w->pg)->up) == 0 || service_ready(w)))
		atomic_store(&w->started, true);
}

/* Swap in a reloaded config: runs on the worker's thread. */
static void
worker_apply_config(struct worker *w, void *arg)
{
	struct config *cfg = arg;

	httpd_reconfigure(w->httpd, cfg);
	pg_pool_reconfigure(w->pg, cfg);
	rds_reconfigure(w->rds, cfg);
	for (int i = 0; i < SERVICE_COUNT; i++)
		if (service_table[i].reconfigure != NULL)
			service_table[i].reconfigure(w, cfg);
	config_unref(w->cfg);
	w->cfg = cfg;
}

static void
worker_on_drain_timeout(evutil_socket_t fd, short what, void *arg)
{
	struct worker *w = arg;

	if (httpd_inflight(w->httpd) > 0 || !w->flush_grace)
		log_warn("shutdown timeout: dropping in-flight requests", "inflight=%d sending=%d",
		    httpd_inflight(w->httpd), httpd_sending(w->httpd));
	event_base_loopexit(w->base, NULL);
}

static void
worker_begin_drain(struct worker *w, void *arg)
{
	int64_t ms = w->cfg->server.shutdown_timeout;
	struct timeval tv = { .tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000 };

	w->draining = true;
	httpd_stop_accepting(w->httpd);
	for (int i = 0; i < SERVICE_COUNT; i++)
		if (service_table[i].drain != NULL)
			service_table[i].drain(w);
	evtimer_add(w->drain_timer, &tv);
	worker_request_done(w);
}

/* A client that vanished mid-write never completes; don't wait for it long. */
#define WORKER_FLUSH_GRACE_MS 1000

/* No worker has a request in flight (an owner may be working for another's). */
static bool
worker_set_idle(struct worker_set *s)
{
	for (int i = 0; i < s->n; i++)
		if (atomic_load(&s->workers[i].inflight) > 0)
			return false;
	return true;
}

/* End the loop once every worker's requests are answered and ours are written. */
static void
worker_drain_check(struct worker *w, void *arg)
{
	struct timeval grace = { 0, WORKER_FLUSH_GRACE_MS * 1000 };

	/* httpd NULL: this loop has ended and freed it; a late message finds it gone. */
	if (!w->draining || w->httpd == NULL || !worker_set_idle(w->set))
		return;
	if (httpd_sending(w->httpd) == 0)
		event_base_loopexit(w->base, NULL);
	else if (!w->flush_grace) {
		/* Every request is answered: only the writes remain, so shorten the wait. */
		w->flush_grace = true;
		evtimer_add(w->drain_timer, &grace);
	}
}

void
worker_request_done(struct worker *w)
{
	if (!w->draining)
		return;
	/*
	 * An owner worker keeps running while another worker's request waits
	 * for it; tell the others when this one has nothing left.
	 */
	if (atomic_load(&w->inflight) == 0)
		for (int i = 0; i < w->set->n; i++)
			if (&w->set->workers[i] != w)
				worker_post(&w->set->workers[i], worker_drain_check, NULL);
	worker_drain_check(w, NULL);
}

static void *
worker_main(void *arg)
{
	struct worker *w = arg;
	sigset_t all;

	/* Signals belong to the main thread. */
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, NULL);
	worker_current = w;
	log_set_worker(w->id);
	pg_pool_start(w->pg);
	rds_start(w->rds);
	for (int i = 0; i < SERVICE_COUNT; i++)
		if (service_table[i].start != NULL)
			service_table[i].start(w);
	event_base_dispatch(w->base);
	/*
	 * Fail what still waits on the database and Redis first, so their
	 * handlers answer while the HTTP connections still exist.
	 */
	for (int i = SERVICE_COUNT - 1; i >= 0; i--)
		if (service_table[i].close != NULL)
			service_table[i].close(w);
	pg_pool_close(w->pg);
	rds_close(w->rds);
	httpd_free(w->httpd);
	w->httpd = NULL;
	/* htc frees a resolver that still had a lookup out a loop turn or two later. */
	for (int i = 0; i < 3; i++)
		event_base_loop(w->base, EVLOOP_NONBLOCK);
	atomic_store(&w->exited, true);
	return NULL;
}

/* A listening socket of our own: SO_REUSEPORT spreads connections over workers. */
static int
worker_listen(const struct config *cfg, bool reuseport, char **cause)
{
	struct sockaddr_storage ss;
	socklen_t len;
	int fd, one = 1, family;

	memset(&ss, 0, sizeof(ss));
	if (strchr(cfg->server.listen_addr, ':') != NULL) {
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;

		family = s6->sin6_family = AF_INET6;
		s6->sin6_port = htons((uint16_t)cfg->server.listen_port);
		inet_pton(AF_INET6, cfg->server.listen_addr, &s6->sin6_addr);
		len = sizeof(*s6);
	} else {
		struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;

		family = s4->sin_family = AF_INET;
		s4->sin_port = htons((uint16_t)cfg->server.listen_port);
		inet_pton(AF_INET, cfg->server.listen_addr, &s4->sin_addr);
		len = sizeof(*s4);
	}
	fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0 ||
	    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
	    /*
	     * Accepted sockets inherit it.  An answer larger than a segment
	     * (a list page is ~80 KB) would otherwise hold its tail until the
	     * client's delayed ACK, 40 ms later.
	     */
	    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) < 0 ||
	    (reuseport && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0) ||
	    bind(fd, (struct sockaddr *)&ss, len) < 0 ||
	    (reuseport && listen(fd, (int)cfg->server.listen_backlog) < 0)) {
		*cause = xasprintf("cannot listen on %s port %lld: %s", cfg->server.listen_addr,
		    (long long)cfg->server.listen_port, strerror(errno));
		if (fd >= 0)
			close(fd);
		return -1;
	}
	return fd;
}

/*
 * An event base whose epoll backend batches changes: a request makes
 * libevent turn a connection's read and write interest off and on
 * several times per loop turn, and with the changelist those cancel out
 * instead of costing one epoll_ctl(2) each (four per request without it).
 */
static struct event_base *
worker_new_base(void)
{
	struct event_config *ec = event_config_new();
	struct event_base *base;

	if (ec == NULL)
		return NULL;
	event_config_set_flag(ec, EVENT_BASE_FLAG_EPOLL_USE_CHANGELIST);
	base = event_base_new_with_config(ec);
	event_config_free(ec);
	return base;
}

static void
worker_init(struct worker *w, struct worker_set *s, int id, struct config *cfg, int fd)
{
	w->id = id;
	w->set = s;
	w->cfg = config_ref(cfg);
	w->listen_fd = fd;
	w->base = worker_new_base();
	if (w->base == NULL) {
		log_error("cannot create event base", "worker=%d", id);
		abort();
	}
	pthread_mutex_init(&w->lock, NULL);
	TAILQ_INIT(&w->inbox);
	w->wake = event_new(w->base, -1, EV_PERSIST, worker_on_wake, w);
	event_add(w->wake, NULL);
	w->tick = event_new(w->base, -1, EV_PERSIST, worker_on_tick, w);
	w->drain_timer = evtimer_new(w->base, worker_on_drain_timeout, w);
	{
		struct timeval tv = { 0, WORKER_TICK_MS * 1000 };

		event_add(w->tick, &tv);
	}
	atomic_store(&w->heartbeat_us, util_mono_us());
	w->pg = pg_pool_new(w->base, cfg);
	for (const struct service *sv = service_table; sv->name != NULL; sv++)
		if (sv->prepare != NULL)
			sv->prepare(w->pg);
	w->wheel = twheel_new(worker_now_ms());
	w->wheel_ev = evtimer_new(w->base, worker_on_wheel, w);
	twheel_set_arm(w->wheel, worker_arm_wheel, w);
	w->rds = rds_new(w->base, cfg);
	for (int i = 0; i < SERVICE_COUNT; i++)
		if (service_table[i].create != NULL)
			w->svc[i] = service_table[i].create(w);
	w->httpd = httpd_new(w, fd);
}

/* Unique per process start, and names the host and pid so stale leases can be told. */
static void
worker_instance_name(char *buf, size_t size)
{
	char host[64];

	if (gethostname(host, sizeof(host)) != 0)
		strcpy(host, "unknown");
	host[sizeof(host) - 1] = '\0';
	for (char *c = host; *c != '\0'; c++)
		if (*c == ':')
			*c = '_';
	snprintf(buf, size, "%s:%ld:%08x", host, (long)getpid(), util_random());
}

struct worker_set *
worker_set_new(struct config *cfg, char **cause)
{
	struct worker_set *s;
	int n = config_worker_count(cfg), probe, *fds;

	/*
	 * SO_REUSEPORT would let us share a port with another orderflowd by
	 * mistake; a plain bind first proves the port is free.
	 */
	if ((probe = worker_listen(cfg, false, cause)) < 0)
		return NULL;
	close(probe);
	fds = xcalloc((size_t)n, sizeof(int));
	for (int i = 0; i < n; i++) {
		if ((fds[i] = worker_listen(cfg, true, cause)) < 0) {
			while (i-- > 0)
				close(fds[i]);
			free(fds);
			return NULL;
		}
	}
	s = xcalloc(1, sizeof(*s));
	s->n = n;
	s->start_mono_us = util_mono_us();
	worker_instance_name(s->instance, sizeof(s->instance));
	s->workers = xcalloc((size_t)n, sizeof(*s->workers));
	for (int i = 0; i < n; i++)
		worker_init(&s->workers[i], s, i, cfg, fds[i]);
	free(fds);
	return s;
}

bool
worker_set_start(struct worker_set *s, char **cause)
{
	for (int i = 0; i < s->n; i++) {
		int rc = pthread_create(&s->workers[i].thread, NULL, worker_main, &s->workers[i]);

		if (rc != 0) {
			*cause = xasprintf("cannot start worker %d: %s", i, strerror(rc));
			return false;
		}
	}
	return true;
}

void
worker_set_reload(struct worker_set *s, struct config *cfg)
{
	for (int i = 0; i < s->n; i++)
		worker_post(&s->workers[i], worker_apply_config, config_ref(cfg));
}

void
worker_set_drain(struct worker_set *s)
{
	for (int i = 0; i < s->n; i++)
		worker_post(&s->workers[i], worker_begin_drain, NULL);
}

bool
worker_set_all_started(struct worker_set *s)
{
	for (int i = 0; i < s->n; i++)
		if (!atomic_load(&s->workers[i].started))
			return false;
	return true;
}

bool
worker_set_all_exited(struct worker_set *s)
{
	for (int i = 0; i < s->n; i++)
		if (!atomic_load(&s->workers[i].exited))
			return false;
	return true;
}

/* Run or drop what is still queued for a worker whose thread has ended. */
static void
worker_drop_inbox(struct worker *w)
{
	struct worker_msg *m;

	while ((m = TAILQ_FIRST(&w->inbox)) != NULL) {
		TAILQ_REMOVE(&w->inbox, m, entry);
		if (m->fn == worker_apply_config)
			config_unref(m->arg);
		else if (m->drop != NULL)
			m->drop(w, m->arg);
		free(m);
	}
}

void
worker_set_free(struct worker_set *s)
{
	/* Every thread first: each reads the others' counters until it ends. */
	for (int i = 0; i < s->n; i++)
		pthread_join(s->workers[i].thread, NULL);
	for (int i = 0; i < s->n; i++)
		worker_drop_inbox(&s->workers[i]);
	for (int i = 0; i < s->n; i++) {
		struct worker *w = &s->workers[i];

		for (int k = SERVICE_COUNT - 1; k >= 0; k--)
			if (service_table[k].destroy != NULL && w->svc[k] != NULL)
				service_table[k].destroy(w);
		pg_pool_free(w->pg);
		twheel_free(w->wheel);
		event_free(w->wheel_ev);
		rds_free(w->rds);
		event_free(w->wake);
		event_free(w->tick);
		event_free(w->drain_timer);
		event_base_free(w->base);
		pthread_mutex_destroy(&w->lock);
		config_unref(w->cfg);
	}
	free(s->workers);
	free(s);
}
