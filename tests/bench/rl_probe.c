/*
 * rl_probe - drive the rate limiter (src/http/ratelimit.c) against a real Redis.
 *
 * Usage: rl_probe --port PORT [--host IP] --rate R --burst B [--count N]
 *                 [--concurrency C] [--pause-ms MS] [--timeout-ms T]
 *                 [--reconnect-ms MS] [--wait-ms MS] [--no-wait]
 *                 [--start-at-ms WALL_MS] [-v] SUBJECT [SUBJECT...]
 *        rl_probe --print-script | --print-sha
 *
 * Connects one worker-like limiter (an rds connection on its own
 * event_base) to Redis, waits until it is connected (at most --wait-ms,
 * default 5000; --no-wait starts at once, so a stopped Redis means
 * in-process decisions), optionally sleeps until the wall clock reads
 * --start-at-ms (to start two probes together), then makes COUNT checks
 * (default 1) with at most CONCURRENCY (default 1) waiting for Redis;
 * check i is for SUBJECT number i modulo the number of SUBJECTs.  The next
 * check starts from inside the callback of the previous one, after
 * PAUSE_MS when given.  --timeout-ms is redis.command_timeout (default
 * 2000, at least 100), --reconnect-ms redis.reconnect_min.
 *
 * Output on stdout, one JSON object a line:
 *   {"i":0,"subject":"c:a","allowed":true,"source":"redis","limit":5,
 *    "remaining":4,"reset_ms":200,"retry_after_ms":0,"reset_s":1,
 *    "retry_after_s":0,"ms":0.412}                       per decision
 *   {"i":3,"invalid":true}                               ratelimit_check refused
 *   {"summary":{"decisions":N,"allowed":N,"limited":N,"invalid":N,
 *    "by_source":{"off":N,"redis":N,"local":N},"connected":true,
 *    "stats":{"allowed":N,"limited":N,"fallback":N,"redis_errors":N,
 *    "fallback_active":N},"metrics":"...","elapsed_ms":12.5}}
 * The stats and the metrics text are read after the run, before the
 * limiter is freed.  --print-script and --print-sha print the Lua script
 * or its SHA-1 and exit.  Exit status 0 when the run happened, 2 on a
 * usage error.
 */
#include "config.h"

#include <event2/buffer.h>
#include <event2/event.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "orderflow/config.h"
#include "orderflow/httpd.h"
#include "orderflow/log.h"
#include "orderflow/ratelimit.h"
#include "orderflow/rds.h"
#include "orderflow/util.h"

static const char *const probe_source_names[] = { "off", "redis", "local" };

struct probe {
	struct event_base *base;
	struct rds	*rds;
	struct ratelimit *rl;
	char		**subjects;
	int		nsubjects;
	int		count, concurrency;
	int		issued, outstanding, decided, invalid;
	int		allowed, limited;
	int		by_source[3];
	int64_t		pause_ms;
	int64_t		start_us;
	int64_t		wait_until_us;	/* give up waiting for the connection then */
	int64_t		start_at_ms;	/* wall clock to start at, 0 = at once */
	bool		no_wait;
	bool		pausing;	/* a pause timer is pending */
	struct event	*poller;	/* waits for the connection and the start time */
};

/* One check in flight. */
struct probe_req {
	struct probe	*p;
	int		i;
	int64_t		start_us;
};

/* ratelimit.c links httpd_error for its 429 helper; the probe never answers HTTP. */
void
httpd_error(struct httpd_req *hr, int status, const char *code, const char *fmt, ...)
{
	fprintf(stderr, "rl_probe: httpd_error called\n");
	abort();
}

static void probe_issue(struct probe *p);

/* Print s as a JSON string. */
static void
probe_json_string(const char *s)
{
	size_t n = util_json_escape(NULL, 0, s);
	char *buf = xmalloc(n + 1);

	util_json_escape(buf, n + 1, s);
	printf("\"%s\"", buf);
	free(buf);
}

static void
probe_maybe_done(struct probe *p)
{
	if (p->outstanding == 0 && p->issued >= p->count && !p->pausing)
		event_base_loopexit(p->base, NULL);
}

static void
probe_on_pause(evutil_socket_t fd, short what, void *arg)
{
	struct probe *p = arg;

	p->pausing = false;
	probe_issue(p);
}

static void
probe_on_decision(const struct rl_result *res, void *arg)
{
	struct probe_req *q = arg;
	struct probe *p = q->p;

	p->outstanding--;
	p->decided++;
	if (res->allowed)
		p->allowed++;
	else
		p->limited++;
	if ((unsigned)res->source < NELEM(probe_source_names))
		p->by_source[res->source]++;
	printf("{\"i\":%d,\"subject\":", q->i);
	probe_json_string(p->subjects[q->i % p->nsubjects]);
	printf(",\"allowed\":%s,\"source\":\"%s\",\"limit\":%lld,\"remaining\":%lld,"
	    "\"reset_ms\":%lld,\"retry_after_ms\":%lld,\"reset_s\":%lld,\"retry_after_s\":%lld,"
	    "\"ms\":%.3f}\n", res->allowed ? "true" : "false",
	    (unsigned)res->source < NELEM(probe_source_names) ? probe_source_names[res->source] : "?",
	    (long long)res->limit, (long long)res->remaining, (long long)res->reset_ms,
	    (long long)res->retry_after_ms, (long long)res->reset_s, (long long)res->retry_after_s,
	    (double)(util_mono_us() - q->start_us) / 1000.0);
	fflush(stdout);
	free(q);
	if (p->pause_ms > 0 && p->issued < p->count) {
		struct timeval tv = { .tv_sec = p->pause_ms / 1000,
			.tv_usec = (p->pause_ms % 1000) * 1000 };

		if (!p->pausing) {
			p->pausing = true;
			event_base_once(p->base, -1, EV_TIMEOUT, probe_on_pause, p, &tv);
		}
	} else
		probe_issue(p);
	probe_maybe_done(p);
}

/*
 * Start checks until CONCURRENCY are in flight or COUNT were started.  A
 * decision may come before ratelimit_check returns, which re-enters here;
 * the counters are updated before the call, so that stays correct.
 */
static void
probe_issue(struct probe *p)
{
	while (p->outstanding < p->concurrency && p->issued < p->count && !p->pausing) {
		struct probe_req *q = xcalloc(1, sizeof(*q));

		q->p = p;
		q->i = p->issued++;
		q->start_us = util_mono_us();
		p->outstanding++;
		if (!ratelimit_check(p->rl, p->subjects[q->i % p->nsubjects], probe_on_decision, q)) {
			p->outstanding--;
			p->invalid++;
			printf("{\"i\":%d,\"invalid\":true}\n", q->i);
			fflush(stdout);
			free(q);
		}
		if (p->pause_ms > 0)
			break;		/* one at a time; the callback schedules the next */
	}
	probe_maybe_done(p);
}

/* Every 5 ms until connected (or given up) and the start time has come. */
static void
probe_on_poll(evutil_socket_t fd, short what, void *arg)
{
	struct probe *p = arg;
	struct timeval tv = { 0, 5000 };

	if ((p->no_wait || rds_connected(p->rds) || util_mono_us() >= p->wait_until_us) &&
	    (p->start_at_ms == 0 || util_wall_ms() >= p->start_at_ms)) {
		p->start_us = util_mono_us();
		probe_issue(p);
		return;
	}
	evtimer_add(p->poller, &tv);
}

static void
probe_summary(struct probe *p)
{
	struct ratelimit_stats st;
	struct evbuffer *m = evbuffer_new();
	size_t len;
	char *text;

	ratelimit_stats_get(&st);
	ratelimit_metrics(m);
	len = evbuffer_get_length(m);
	text = xmalloc(len + 1);
	evbuffer_remove(m, text, len);
	text[len] = '\0';
	evbuffer_free(m);
	printf("{\"summary\":{\"decisions\":%d,\"allowed\":%d,\"limited\":%d,\"invalid\":%d,"
	    "\"by_source\":{\"off\":%d,\"redis\":%d,\"local\":%d},\"connected\":%s,"
	    "\"stats\":{\"allowed\":%llu,\"limited\":%llu,\"fallback\":%llu,\"redis_errors\":%llu,"
	    "\"fallback_active\":%d},\"metrics\":", p->decided, p->allowed, p->limited, p->invalid,
	    p->by_source[0], p->by_source[1], p->by_source[2],
	    rds_connected(p->rds) ? "true" : "false",
	    (unsigned long long)st.allowed, (unsigned long long)st.limited,
	    (unsigned long long)st.fallback, (unsigned long long)st.redis_errors, st.fallback_active);
	probe_json_string(text);
	printf(",\"elapsed_ms\":%.3f}}\n", (double)(util_mono_us() - p->start_us) / 1000.0);
	fflush(stdout);
	free(text);
}

static void NORETURN
probe_usage(void)
{
	fprintf(stderr, "usage: rl_probe --port PORT [--host IP] --rate R --burst B [--count N] "
	    "[--concurrency C] [--pause-ms MS] [--timeout-ms T] [--reconnect-ms MS] "
	    "[--wait-ms MS] [--no-wait] [--start-at-ms WALL_MS] [-v] SUBJECT [SUBJECT...]\n"
	    "       rl_probe --print-script | --print-sha\n");
	exit(2);
}

int
main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "host", required_argument, NULL, 'h' },
		{ "port", required_argument, NULL, 'P' },
		{ "rate", required_argument, NULL, 'r' },
		{ "burst", required_argument, NULL, 'b' },
		{ "count", required_argument, NULL, 'c' },
		{ "concurrency", required_argument, NULL, 'C' },
		{ "pause-ms", required_argument, NULL, 'p' },
		{ "timeout-ms", required_argument, NULL, 't' },
		{ "reconnect-ms", required_argument, NULL, 'R' },
		{ "wait-ms", required_argument, NULL, 'w' },
		{ "no-wait", no_argument, NULL, 'n' },
		{ "start-at-ms", required_argument, NULL, 's' },
		{ "print-script", no_argument, NULL, 'S' },
		{ "print-sha", no_argument, NULL, 'H' },
		{ NULL, 0, NULL, 0 },
	};
	struct probe p = { .count = 1, .concurrency = 1 };
	const char *host = "127.0.0.1";
	long long port = 0, rate = -1, burst = -1, timeout_ms = 2000, reconnect_ms = 100;
	long long wait_ms = 5000;
	struct config *cfg;
	char *text, *cause = NULL;
	int ch;

	while ((ch = getopt_long(argc, argv, "v", opts, NULL)) != -1) {
		switch (ch) {
		case 'h': host = optarg; break;
		case 'P': port = atoll(optarg); break;
		case 'r': rate = atoll(optarg); break;
		case 'b': burst = atoll(optarg); break;
		case 'c': p.count = atoi(optarg); break;
		case 'C': p.concurrency = atoi(optarg); break;
		case 'p': p.pause_ms = atoll(optarg); break;
		case 't': timeout_ms = atoll(optarg); break;
		case 'R': reconnect_ms = atoll(optarg); break;
		case 'w': wait_ms = atoll(optarg); break;
		case 'n': p.no_wait = true; break;
		case 's': p.start_at_ms = atoll(optarg); break;
		case 'S': fputs(ratelimit_script(), stdout); return 0;
		case 'H': printf("%s\n", ratelimit_script_sha()); return 0;
		case 'v': log_set_level(LOG_DEBUG); break;
		default: probe_usage();
		}
	}
	if (port <= 0 || rate < 0 || burst < 1 || optind >= argc || p.count < 0 ||
	    p.concurrency < 1)
		probe_usage();
	p.subjects = argv + optind;
	p.nsubjects = argc - optind;
	text = xasprintf("[redis]\nhost = %s\nport = %lld\ncommand_timeout = %lldms\n"
	    "connect_timeout = 1s\nreconnect_min = %lldms\nreconnect_max = 1s\n"
	    "[ratelimit]\nrate = %lld\nburst = %lld\n", host, port, timeout_ms, reconnect_ms,
	    rate, burst);
	cfg = config_load_string(text, "rl_probe", &cause);
	free(text);
	if (cfg == NULL) {
		fprintf(stderr, "rl_probe: %s\n", cause);
		free(cause);
		return 2;
	}
	/* Like the daemon: a write to a closed socket must be an error, not a signal. */
	signal(SIGPIPE, SIG_IGN);
	p.base = event_base_new();
	p.rds = rds_new(p.base, cfg);
	p.rl = ratelimit_new(p.base, p.rds, cfg);
	rds_start(p.rds);
	p.wait_until_us = util_mono_us() + wait_ms * 1000;
	p.start_us = util_mono_us();
	p.poller = evtimer_new(p.base, probe_on_poll, &p);
	{
		struct timeval now = { 0, 0 };

		evtimer_add(p.poller, &now);
	}
	event_base_dispatch(p.base);
	probe_summary(&p);
	rds_close(p.rds);
	ratelimit_free(p.rl);
	rds_free(p.rds);
	event_free(p.poller);
	event_base_free(p.base);
	config_unref(cfg);
	return 0;
}
