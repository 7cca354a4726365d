/*
 * worker: one event-loop thread and everything it owns.
 *
 * A worker owns its event_base, its HTTP listener (a SO_REUSEPORT socket
 * of its own), its PostgreSQL pool, its Redis connection and its metrics;
 * nothing of it is touched by another thread except through the inbox
 * (worker_post: a mutex-guarded list plus an event_active wake-up) and the
 * atomics meant for reading.  main creates the set, posts reloads and the
 * drain, and joins the threads.
 */
#ifndef ORDERFLOW_WORKER_H
#define ORDERFLOW_WORKER_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <sys/queue.h>

#include "orderflow/metrics.h"
#include "orderflow/service.h"
#include "orderflow/util.h"

struct config;
struct event;
struct event_base;
struct httpd;
struct pg_pool;
struct rds;
struct twheel;
struct worker;
struct worker_set;

typedef void worker_fn(struct worker *w, void *arg);

/* A function to run on a worker's thread, queued by any thread. */
struct worker_msg {
	TAILQ_ENTRY(worker_msg) entry;
	worker_fn	*fn;
	worker_fn	*drop;		/* frees arg if the message is never run, or NULL */
	void		*arg;
};

struct worker {
	int		id;
	struct worker_set *set;		/* all workers, for health figures */
	pthread_t	thread;
	struct event_base *base;
	struct config	*cfg;		/* this worker's snapshot (holds a ref) */
	int		listen_fd;	/* handed to httpd at start */
	struct httpd	*httpd;
	struct pg_pool	*pg;
	struct rds	*rds;
	void		*svc[SERVICE_COUNT];	/* the services' instances (service.h) */
	struct twheel	*wheel;		/* retries, backoffs, breaker resets */
	struct event	*wheel_ev;	/* the one libevent timer that drives the wheel (twheel_set_arm) */
	struct metrics	metrics;
	pthread_mutex_t	lock;		/* guards inbox */
	TAILQ_HEAD(, worker_msg) inbox;
	struct event	*wake;		/* activated by worker_post */
	struct event	*tick;		/* heartbeat */
	struct event	*drain_timer;	/* shutdown_timeout after the drain began */
	bool		draining;	/* no longer accepting; exit when idle */
	bool		flush_grace;	/* drain_timer now waits only for writes */
	atomic_llong	heartbeat_us;	/* mono time of the last tick */
	atomic_llong	lag_us;		/* how late the last tick ran */
	atomic_bool	started;	/* first PostgreSQL and Redis attempts done */
	atomic_int	inflight;	/* requests not answered yet (a drain waits for every worker's) */
	atomic_bool	exited;		/* the loop has ended */
};

struct worker_set {
	int		n;
	struct worker	*workers;
	int64_t		start_mono_us;
	char		instance[128];	/* "host:pid:random": the lease owner of this process */
};

/* How often a worker ticks; a worker silent for much longer is stuck. */
#define WORKER_TICK_MS 250

/* Bind one listening socket per worker; NULL and *cause on error. */
struct worker_set *worker_set_new(struct config *cfg, char **cause) MUSTCHECK;
/* Start the threads. */
bool worker_set_start(struct worker_set *s, char **cause) MUSTCHECK;
/* Give every worker the new config (each takes a reference). */
void worker_set_reload(struct worker_set *s, struct config *cfg);
/* Stop accepting, finish in-flight requests, then end each loop. */
void worker_set_drain(struct worker_set *s);
bool worker_set_all_started(struct worker_set *s);
bool worker_set_all_exited(struct worker_set *s);
/* Join the threads and free everything. */
void worker_set_free(struct worker_set *s);

void worker_post(struct worker *w, worker_fn *fn, void *arg);
/* The same, with drop(w, arg) run instead of fn if the worker ends first. */
void worker_post_owned(struct worker *w, worker_fn *fn, worker_fn *drop, void *arg);
/* The worker that owns key (an order or shop id): the same for the process's life. */
struct worker *worker_owner(struct worker_set *s, const char *key);
/* Monotonic milliseconds, the wheel's clock. */
uint64_t worker_now_ms(void);
/* The worker running on this thread, or NULL on the main thread. */
struct worker *worker_self(void);
/* Called by httpd when a request was answered; ends a drain when idle. */
void worker_request_done(struct worker *w);

#endif
