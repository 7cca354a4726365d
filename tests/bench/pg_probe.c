/*
 * pg_probe - drive the PostgreSQL pool (src/io/pg.c) against a real server.
 *
 * Usage: pg_probe --conninfo CONNINFO [--pool N] [--batches N] [--fail-every K]
 *        pg_probe --conninfo CONNINFO [--pool N] [--batches N] --sever
 *
 * Opens a pool of --pool connections (default 1) on its own event_base,
 * waits until all are up (5 s at most), then submits --batches batches
 * (default 20) in one go, so that they queue and pipeline on the
 * connections.  Batch k inserts k into probe_t (which the caller created:
 * CREATE TABLE probe_t (k integer PRIMARY KEY)) and reads k back through
 * a prepared statement; every --fail-every-th batch (default 3; 0 = none)
 * divides by zero between the two, so its insert must roll back while
 * its neighbours, sent on the same connection before and after it, commit.
 *
 * Output on stdout, one JSON object a line:
 *   {"k":1,"ok":true,"value":"1","sqlstate":"","order":0}   per batch, in
 *                                                  callback order
 *   {"summary":{"batches":N,"ok":N,"failed":N,"waiting_after_submit":N,
 *    "stats_batches":N,"stats_errors":N,"up":N}}
 * Exit status 0 when every batch called back once, 1 otherwise, 2 on a
 * usage error.
 *
 * --sever checks that no callback runs inside pg_submit.  Once every
 * connection is idle it shuts down (SHUT_RDWR) each socket of the process
 * connected to the server's port, then submits batches one at a time, in
 * the same loop turn, until the pool loses a connection inside a
 * pg_submit (stats.up drops; see probe_sever_start).  It waits for every
 * callback, then for the pool to reconnect, and submits one more batch,
 * which must succeed.  --batches bounds the submits after severing.  One line on stdout:
 *   {"sever":{"severed":N,"submitted":N,"failed_at":N,"submit":"ok",
 *    "inside":false,"later":N,"each_once":true,"error":"...",
 *    "reconnected":true,"after_ok":true,"after_calls":1,
 *    "stats_batches":N,"stats_errors":N}}
 * "inside" says some callback ran before a pg_submit returned, "later"
 * counts those that ran after.  Exit status 0 when all went as it should,
 * 1 otherwise.
 */
#include "config.h"

#include <dirent.h>
#include <event2/event.h>
#include <getopt.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "orderflow/config.h"
#include "orderflow/pg.h"
#include "orderflow/util.h"

#define PROBE_MAX_BATCHES 10000

struct probe;

struct probe_batch {
	struct probe	*p;
	int		k;
	int		calls;
};

struct probe {
	struct event_base *base;
	struct pg_pool	*pg;
	struct event	*poller;
	struct probe_batch *batches;
	int		pool, nbatches, fail_every, done, ok, order;
	int		waiting_after_submit;
	int64_t		deadline_us;
	bool		submitted;
	/* --sever */
	bool		sever;
	int		port;		/* the server's, from the conninfo */
	int		phase;		/* PROBE_SEVER_* */
	int		severed;	/* sockets shut down */
	int		nsever;		/* batches submitted after severing */
	int		failed_at;	/* the submit a connection went down in, 1-based */
	enum pg_submit	submit_rc;	/* of the last of those submits */
	bool		in_submit;	/* pg_submit of this probe is running */
	bool		inside;		/* a callback ran while it was */
	int		later;		/* callbacks that ran after it returned */
	bool		reconnected;
	struct probe_batch after;	/* the batch sent once the pool is back */
	bool		after_ok;
	char		*error;		/* first error of the failed batches */
};

enum {
	PROBE_SEVER_IDLE,	/* waiting for every connection to be idle */
	PROBE_SEVER_FAILED,	/* severed and submitted; waiting for the callbacks */
	PROBE_SEVER_RECONNECT,	/* waiting for the pool to come back */
	PROBE_SEVER_AFTER,	/* second batch submitted; waiting for its callback */
};

static void
probe_usage(void)
{
	fprintf(stderr, "usage: pg_probe --conninfo CONNINFO [--pool N] [--batches N]"
	    " [--fail-every K]\n"
	    "       pg_probe --conninfo CONNINFO [--pool N] [--batches N] --sever\n");
	exit(2);
}

static void
probe_on_batch(struct pg_batch *b, void *arg)
{
	struct probe_batch *pb = arg;
	struct probe *p = pb->p;
	PGresult *r = pg_batch_error(b) == NULL ? pg_batch_result(b, 2) : NULL;

	pb->calls++;
	if (pg_batch_error(b) == NULL)
		p->ok++;
	printf("{\"k\":%d,\"ok\":%s,\"value\":\"%s\",\"sqlstate\":\"%s\",\"order\":%d}\n", pb->k,
	    pg_batch_error(b) == NULL ? "true" : "false",
	    r != NULL && PQntuples(r) == 1 ? PQgetvalue(r, 0, 0) : "",
	    pg_batch_sqlstate(b) != NULL ? pg_batch_sqlstate(b) : "", p->order++);
	if (++p->done == p->nbatches)
		event_base_loopexit(p->base, NULL);
}

static void
probe_submit(struct probe *p)
{
	for (int i = 0; i < p->nbatches; i++) {
		struct probe_batch *pb = &p->batches[i];
		struct pg_batch *b = pg_batch_new(probe_on_batch, pb);
		char k[16];

		pb->p = p;
		pb->k = i + 1;
		snprintf(k, sizeof(k), "%d", pb->k);
		pg_batch_add(b, false, "INSERT INTO probe_t (k) VALUES ($1::integer)", 1,
		    (const char *[]){ k });
		pg_batch_add(b, false, p->fail_every > 0 && pb->k % p->fail_every == 0 ?
		    "SELECT 1 / 0" : "SELECT 1", 0, NULL);
		pg_batch_add(b, true, "probe_echo", 1, (const char *[]){ k });
		if (pg_submit(p->pg, b) != PG_OK) {
			fprintf(stderr, "pg_probe: batch %d refused\n", pb->k);
			exit(1);
		}
	}
	p->waiting_after_submit = atomic_load(&pg_pool_stats(p->pg)->waiting);
	p->submitted = true;
}

/* The server's port from the conninfo; libpq's default when it names none. */
static int
probe_port(const char *conninfo)
{
	PQconninfoOption *opts = PQconninfoParse(conninfo, NULL);
	int port = 5432;

	for (PQconninfoOption *o = opts; o != NULL && o->keyword != NULL; o++)
		if (strcmp(o->keyword, "port") == 0 && o->val != NULL && o->val[0] != '\0')
			port = atoi(o->val);
	PQconninfoFree(opts);
	return port;
}

/* Is fd a socket connected to the server (TCP to its port, or its unix socket)? */
static bool
probe_is_server_socket(int fd, int port)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);
	char tail[32];
	size_t n;

	memset(&ss, 0, sizeof(ss));
	if (getpeername(fd, (struct sockaddr *)&ss, &len) != 0)
		return false;
	switch (ss.ss_family) {
	case AF_INET:
		return ntohs(((struct sockaddr_in *)&ss)->sin_port) == port;
	case AF_INET6:
		return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port) == port;
	case AF_UNIX:
		snprintf(tail, sizeof(tail), "/.s.PGSQL.%d", port);
		n = strlen(((struct sockaddr_un *)&ss)->sun_path);
		return n >= strlen(tail) &&
		    strcmp(((struct sockaddr_un *)&ss)->sun_path + n - strlen(tail), tail) == 0;
	default:
		return false;
	}
}

/*
 * Shut down every socket of the process connected to the server: the pool
 * does not notice until it next reads or writes, so the next write fails
 * at once, inside the pg_submit that makes it.
 */
static int
probe_sever(int port)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;
	int n = 0;

	if (d == NULL)
		return 0;
	while ((e = readdir(d)) != NULL) {
		int fd = atoi(e->d_name);

		if (e->d_name[0] == '.' || fd == dirfd(d) || !probe_is_server_socket(fd, port))
			continue;
		if (shutdown(fd, SHUT_RDWR) == 0)
			n++;
	}
	closedir(d);
	return n;
}

static void
probe_on_sever(struct pg_batch *b, void *arg)
{
	struct probe_batch *pb = arg;
	struct probe *p = pb->p;
	struct timeval now = { 0, 0 };

	pb->calls++;
	if (p->in_submit)
		p->inside = true;
	else
		p->later++;
	if (pb == &p->after) {
		p->after_ok = pg_batch_error(b) == NULL && pg_batch_result(b, 0) != NULL &&
		    PQntuples(pg_batch_result(b, 0)) == 1 &&
		    atoi(PQgetvalue(pg_batch_result(b, 0), 0, 0)) == pb->k;
	} else if (p->error == NULL && pg_batch_error(b) != NULL) {
		p->error = xstrdup(pg_batch_error(b));
	}
	/* Only record here: the poller moves on, so nothing runs in pg_submit's stead. */
	evtimer_add(p->poller, &now);
}

static enum pg_submit
probe_sever_submit(struct probe *p, struct probe_batch *pb, int k)
{
	struct pg_batch *b = pg_batch_new(probe_on_sever, pb);
	enum pg_submit rc;
	char v[16];

	pb->p = p;
	pb->k = k;
	snprintf(v, sizeof(v), "%d", k);
	pg_batch_add(b, true, "probe_echo", 1, (const char *[]){ v });
	p->in_submit = true;
	rc = pg_submit(p->pg, b);
	p->in_submit = false;
	return rc;
}

/*
 * Sever, then submit one batch at a time until a connection goes down
 * inside pg_submit.  libpq (12 and later) takes the first EPIPE on a
 * connection as sent and keeps the error for later; the next send on that
 * connection reads, finds the end of file and fails: that is the pg_submit
 * in which the pool loses the connection, and with it every batch on it.
 */
static void
probe_sever_start(struct probe *p)
{
	const struct pg_stats *st = pg_pool_stats(p->pg);

	p->severed = probe_sever(p->port);
	while (p->nsever < p->nbatches) {
		int up = atomic_load(&st->up);

		p->submit_rc = probe_sever_submit(p, &p->batches[p->nsever], p->nsever + 1);
		if (p->submit_rc != PG_OK)
			break;
		p->nsever++;
		if (atomic_load(&st->up) < up) {
			p->failed_at = p->nsever;
			break;
		}
	}
}

/* The --sever steps; each waits on the pool's figures or on callbacks. */
static void
probe_sever_step(struct probe *p)
{
	const struct pg_stats *st = pg_pool_stats(p->pg);
	struct timeval tick = { 0, 10000 };
	bool all = true;

	switch (p->phase) {
	case PROBE_SEVER_IDLE:
		if (atomic_load(&st->up) == p->pool && atomic_load(&st->busy) == 0) {
			p->phase = PROBE_SEVER_FAILED;
			p->deadline_us = util_mono_us() + 10000000;
			probe_sever_start(p);
			p->submitted = true;
			if (p->failed_at == 0) {
				fprintf(stderr, "pg_probe: no connection failed inside pg_submit\n");
				event_base_loopexit(p->base, NULL);
				return;
			}
		}
		break;
	case PROBE_SEVER_FAILED:
		for (int i = 0; i < p->nsever; i++)
			all = all && p->batches[i].calls > 0;
		if (all)
			p->phase = PROBE_SEVER_RECONNECT;
		break;
	case PROBE_SEVER_RECONNECT:
		if (atomic_load(&st->up) == p->pool && atomic_load(&st->busy) == 0) {
			p->reconnected = true;
			p->phase = PROBE_SEVER_AFTER;
			if (probe_sever_submit(p, &p->after, 1000) != PG_OK) {
				event_base_loopexit(p->base, NULL);
				return;
			}
		}
		break;
	case PROBE_SEVER_AFTER:
		if (p->after.calls > 0) {
			event_base_loopexit(p->base, NULL);
			return;
		}
		break;
	}
	if (util_mono_us() > p->deadline_us) {
		fprintf(stderr, "pg_probe: --sever timed out in phase %d\n", p->phase);
		event_base_loopexit(p->base, NULL);
		return;
	}
	evtimer_add(p->poller, &tick);
}

static int
probe_sever_report(struct probe *p)
{
	static const char *const rcs[] = { "ok", "edown", "efull" };
	const struct pg_stats *st = pg_pool_stats(p->pg);
	const char *err = p->error != NULL ? p->error : "";
	size_t n = util_json_escape(NULL, 0, err) + 1;
	char *esc = xcalloc(1, n);
	bool once = p->nsever > 0;

	for (int i = 0; i < p->nsever; i++)
		once = once && p->batches[i].calls == 1;
	util_json_escape(esc, n, err);
	printf("{\"sever\":{\"severed\":%d,\"submitted\":%d,\"failed_at\":%d,\"submit\":\"%s\","
	    "\"inside\":%s,\"later\":%d,\"each_once\":%s,\"error\":\"%s\",\"reconnected\":%s,"
	    "\"after_ok\":%s,\"after_calls\":%d,\"stats_batches\":%llu,\"stats_errors\":%llu}}\n",
	    p->severed, p->nsever, p->failed_at, p->submitted ? rcs[p->submit_rc] : "none",
	    p->inside ? "true" : "false", p->later, once ? "true" : "false", esc,
	    p->reconnected ? "true" : "false", p->after_ok ? "true" : "false",
	    p->after.calls, (unsigned long long)atomic_load(&st->batches),
	    (unsigned long long)atomic_load(&st->errors));
	free(esc);
	return p->severed > 0 && p->failed_at > 0 && p->submit_rc == PG_OK && !p->inside &&
	    once && p->after_ok && p->after.calls == 1 ? 0 : 1;
}

/* Wait for every connection, then submit everything in one loop turn. */
static void
probe_on_poll(evutil_socket_t fd, short what, void *arg)
{
	struct probe *p = arg;
	struct timeval tick = { 0, 10000 };

	(void)fd;
	(void)what;
	if (p->sever) {
		probe_sever_step(p);
		return;
	}
	if (atomic_load(&pg_pool_stats(p->pg)->up) == p->pool) {
		probe_submit(p);
		return;
	}
	if (util_mono_us() > p->deadline_us) {
		fprintf(stderr, "pg_probe: the pool did not come up\n");
		event_base_loopexit(p->base, NULL);
		return;
	}
	evtimer_add(p->poller, &tick);
}

int
main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "conninfo", required_argument, NULL, 'c' },
		{ "pool", required_argument, NULL, 'p' },
		{ "batches", required_argument, NULL, 'b' },
		{ "fail-every", required_argument, NULL, 'f' },
		{ "sever", no_argument, NULL, 's' },
		{ NULL, 0, NULL, 0 },
	};
	struct probe p = { .pool = 1, .nbatches = 20, .fail_every = 3 };
	const char *conninfo = NULL;
	const struct pg_stats *st;
	struct timeval now = { 0, 0 };
	struct config *cfg;
	char *text, *cause = NULL;
	int ch, rc;

	while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (ch) {
		case 'c': conninfo = optarg; break;
		case 'p': p.pool = atoi(optarg); break;
		case 'b': p.nbatches = atoi(optarg); break;
		case 'f': p.fail_every = atoi(optarg); break;
		case 's': p.sever = true; break;
		default: probe_usage();
		}
	}
	if (conninfo == NULL || strchr(conninfo, '\n') != NULL || p.pool < 1 || p.pool > 64 ||
	    p.nbatches < 1 || p.nbatches > PROBE_MAX_BATCHES || p.fail_every < 0 || optind != argc)
		probe_usage();
	text = xasprintf("[postgres]\nconninfo = %s\npool_size = %d\nmax_wait_queue = %d\n",
	    conninfo, p.pool, PROBE_MAX_BATCHES);
	cfg = config_load_string(text, "pg_probe", &cause);
	free(text);
	if (cfg == NULL) {
		fprintf(stderr, "pg_probe: %s\n", cause);
		free(cause);
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);
	p.batches = xcalloc((size_t)p.nbatches, sizeof(*p.batches));
	p.base = event_base_new();
	p.port = probe_port(conninfo);
	p.pg = pg_pool_new(p.base, cfg);
	pg_pool_prepare(p.pg, "probe_echo", "SELECT $1::integer");
	pg_pool_start(p.pg);
	p.deadline_us = util_mono_us() + 5000000;
	p.poller = evtimer_new(p.base, probe_on_poll, &p);
	evtimer_add(p.poller, &now);
	event_base_dispatch(p.base);
	if (p.sever) {
		rc = probe_sever_report(&p);
		goto out;
	}
	st = pg_pool_stats(p.pg);
	printf("{\"summary\":{\"batches\":%d,\"ok\":%d,\"failed\":%d,\"waiting_after_submit\":%d,"
	    "\"stats_batches\":%llu,\"stats_errors\":%llu,\"up\":%d}}\n", p.done, p.ok, p.done - p.ok,
	    p.waiting_after_submit, (unsigned long long)atomic_load(&st->batches),
	    (unsigned long long)atomic_load(&st->errors), atomic_load(&st->up));
	rc = p.submitted && p.done == p.nbatches ? 0 : 1;
	for (int i = 0; i < p.nbatches && p.submitted; i++)
		if (p.batches[i].calls != 1)
			rc = 1;
out:
	pg_pool_free(p.pg);
	event_free(p.poller);
	event_base_free(p.base);
	free(p.batches);
	free(p.error);
	config_unref(cfg);
	return rc;
}
