/*
 * pg_probe - drive the PostgreSQL pool (src/io/pg.c) against a real server.
 *
 * Usage: pg_probe --conninfo CONNINFO [--pool N] [--batches N] [--fail-every K]
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
 */
#include "config.h"

#include <event2/event.h>
#include <getopt.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
};

static void
probe_usage(void)
{
	fprintf(stderr, "usage: pg_probe --conninfo CONNINFO [--pool N] [--batches N]"
	    " [--fail-every K]\n");
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

/* Wait for every connection, then submit everything in one loop turn. */
static void
probe_on_poll(evutil_socket_t fd, short what, void *arg)
{
	struct probe *p = arg;
	struct timeval tick = { 0, 10000 };

	(void)fd;
	(void)what;
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
	p.pg = pg_pool_new(p.base, cfg);
	pg_pool_prepare(p.pg, "probe_echo", "SELECT $1::integer");
	pg_pool_start(p.pg);
	p.deadline_us = util_mono_us() + 5000000;
	p.poller = evtimer_new(p.base, probe_on_poll, &p);
	evtimer_add(p.poller, &now);
	event_base_dispatch(p.base);
	st = pg_pool_stats(p.pg);
	printf("{\"summary\":{\"batches\":%d,\"ok\":%d,\"failed\":%d,\"waiting_after_submit\":%d,"
	    "\"stats_batches\":%llu,\"stats_errors\":%llu,\"up\":%d}}\n", p.done, p.ok, p.done - p.ok,
	    p.waiting_after_submit, (unsigned long long)atomic_load(&st->batches),
	    (unsigned long long)atomic_load(&st->errors), atomic_load(&st->up));
	rc = p.submitted && p.done == p.nbatches ? 0 : 1;
	for (int i = 0; i < p.nbatches && p.submitted; i++)
		if (p.batches[i].calls != 1)
			rc = 1;
	pg_pool_free(p.pg);
	event_free(p.poller);
	event_base_free(p.base);
	free(p.batches);
	config_unref(cfg);
	return rc;
}
