/*
 * htc_probe - drive the outbound HTTP client (src/io/htc.c) against a real server.
 *
 * Usage: htc_probe --url BASE_URL [--ca FILE] [--connections N] [--max-queue Q]
 *                  [--timeout-ms T] [--connect-timeout-ms T] [--count N]
 *                  [--concurrency C] [--method M] [--body TEXT] [--header NAME:VALUE]...
 *                  [--pause-ms MS] [--close-after-ms MS] [--close-after-answers N]
 *                  [--body-max BYTES] [-v] PATH [PATH...]
 *
 * Sends COUNT requests (default 1) with at most CONCURRENCY (default 1) in
 * flight; request i goes to PATH number i modulo the number of PATHs (so a
 * test can pass one signed path per request).  The next request is started
 * from inside the callback of the previous one, after PAUSE_MS when given.
 * --close-after-ms calls htc_close that long after the start, and
 * --close-after-answers from inside the callback of the Nth answer (the
 * requests in flight then get HTC_ECLOSED and no more are sent).
 *
 * Output on stdout, one JSON object a line:
 *   {"i":0,"error":"HTC_OK","error_text":"","status":200,"body_len":91,
 *    "body":"...","retry_after":null,"ms":3.141}   per answer (body cut at
 *                                                  --body-max, default 65536)
 *   {"i":3,"rejected":true}                        htc_request returned false
 *   {"summary":{"answered":N,"rejected":N,"errors":{"HTC_OK":N,...},
 *    "stats":{"requests":N,"errors":N,"connects":N,"open":N,"waiting":N},
 *    "origin":"127.0.0.1:8443","elapsed_ms":12.5}}
 * The stats are read after the run, before htc_free.  Exit status 0 when
 * the run happened, 2 on a usage error or when htc_new refuses the setup.
 */
#include "config.h"

#include <event2/event.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "orderflow/htc.h"
#include "orderflow/log.h"
#include "orderflow/util.h"

#define PROBE_MAX_HEADERS 32

static const char *const probe_error_names[] = {
	"HTC_OK", "HTC_ECONNECT", "HTC_ETIMEOUT", "HTC_EPROTO", "HTC_ECLOSED", "HTC_EFULL",
};

struct probe {
	struct event_base *base;
	struct htc	*htc;
	char		**paths;
	int		npaths;
	const char	*method;
	const char	*body;
	const char	*headers[2 * PROBE_MAX_HEADERS + 1];
	int		count, concurrency;
	int		issued, outstanding, answered, rejected;
	int64_t		pause_ms;
	int		close_after_answers;	/* 0 = never */
	size_t		body_max;
	bool		closed;
	int64_t		start_us;
	unsigned long long by_error[NELEM(probe_error_names)];
};

/* One request in flight. */
struct probe_req {
	struct probe	*p;
	int		i;
	int64_t		start_us;
};

static void probe_issue(struct probe *p);

/* Print s (len bytes) as a JSON string; bytes outside ASCII become \u00XX. */
static void
probe_json_string(const char *s, size_t len)
{
	putchar('"');
	for (size_t i = 0; i < len; i++) {
		unsigned char ch = (unsigned char)s[i];

		if (ch == '"' || ch == '\\')
			printf("\\%c", ch);
		else if (ch == '\n')
			fputs("\\n", stdout);
		else if (ch < 0x20 || ch >= 0x7f)
			printf("\\u%04x", ch);
		else
			putchar(ch);
	}
	putchar('"');
}

static void
probe_maybe_done(struct probe *p)
{
	if (p->outstanding == 0 && (p->issued >= p->count || p->closed))
		event_base_loopexit(p->base, NULL);
}

static void
probe_on_pause(evutil_socket_t fd, short what, void *arg)
{
	probe_issue(arg);
}

static void
probe_on_response(const struct htc_response *r, void *arg)
{
	struct probe_req *q = arg;
	struct probe *p = q->p;
	size_t shown = r->body_len < p->body_max ? r->body_len : p->body_max;

	p->outstanding--;
	p->answered++;
	if ((size_t)r->error < NELEM(probe_error_names))
		p->by_error[r->error]++;
	printf("{\"i\":%d,\"error\":\"%s\",\"error_text\":", q->i,
	    (size_t)r->error < NELEM(probe_error_names) ? probe_error_names[r->error] : "?");
	probe_json_string(r->error_text, strlen(r->error_text));
	printf(",\"status\":%d,\"body_len\":%zu,\"body\":", r->status, r->body_len);
	probe_json_string(r->body, shown);
	fputs(",\"retry_after\":", stdout);
	if (r->retry_after != NULL)
		probe_json_string(r->retry_after, strlen(r->retry_after));
	else
		fputs("null", stdout);
	printf(",\"ms\":%.3f}\n", (double)(util_mono_us() - q->start_us) / 1000.0);
	fflush(stdout);
	free(q);
	if (p->close_after_answers > 0 && p->answered == p->close_after_answers && !p->closed) {
		/* From inside a callback, as a worker shutting down might. */
		p->closed = true;
		htc_close(p->htc);
	}
	if (p->pause_ms > 0 && !p->closed && p->issued < p->count) {
		struct timeval tv = { .tv_sec = p->pause_ms / 1000,
			.tv_usec = (p->pause_ms % 1000) * 1000 };

		event_base_once(p->base, -1, EV_TIMEOUT, probe_on_pause, p, &tv);
	} else
		probe_issue(p);
	probe_maybe_done(p);
}

/* Start requests until CONCURRENCY are in flight or COUNT were started. */
static void
probe_issue(struct probe *p)
{
	while (!p->closed && p->outstanding < p->concurrency && p->issued < p->count) {
		struct probe_req *q = xcalloc(1, sizeof(*q));
		const char *body = p->body;

		q->p = p;
		q->i = p->issued++;
		q->start_us = util_mono_us();
		if (htc_request(p->htc, p->method, p->paths[q->i % p->npaths], p->headers, body,
		    body != NULL ? strlen(body) : 0, probe_on_response, q)) {
			p->outstanding++;
		} else {
			p->rejected++;
			printf("{\"i\":%d,\"rejected\":true}\n", q->i);
			fflush(stdout);
			free(q);
		}
	}
	probe_maybe_done(p);
}

static void
probe_on_close(evutil_socket_t fd, short what, void *arg)
{
	struct probe *p = arg;

	p->closed = true;
	htc_close(p->htc);
	probe_maybe_done(p);
}

static void
probe_summary(struct probe *p)
{
	const struct htc_stats *st = htc_stats(p->htc);

	printf("{\"summary\":{\"answered\":%d,\"rejected\":%d,\"errors\":{", p->answered, p->rejected);
	for (size_t i = 0; i < NELEM(probe_error_names); i++)
		printf("%s\"%s\":%llu", i > 0 ? "," : "", probe_error_names[i], p->by_error[i]);
	printf("},\"stats\":{\"requests\":%llu,\"errors\":%llu,\"connects\":%llu,"
	    "\"open\":%d,\"waiting\":%d},\"origin\":",
	    (unsigned long long)atomic_load(&st->requests), (unsigned long long)atomic_load(&st->errors),
	    (unsigned long long)atomic_load(&st->connects), atomic_load(&st->open),
	    atomic_load(&st->waiting));
	probe_json_string(htc_origin(p->htc), strlen(htc_origin(p->htc)));
	printf(",\"elapsed_ms\":%.3f}}\n", (double)(util_mono_us() - p->start_us) / 1000.0);
	fflush(stdout);
}

static void NORETURN
probe_usage(void)
{
	fprintf(stderr, "usage: htc_probe --url BASE_URL [--ca FILE] [--connections N] "
	    "[--max-queue Q] [--timeout-ms T] [--connect-timeout-ms T] [--count N] "
	    "[--concurrency C] [--method M] [--body TEXT] [--header NAME:VALUE]... "
	    "[--pause-ms MS] [--close-after-ms MS] [--close-after-answers N] [--body-max BYTES] "
	    "[-v] PATH [PATH...]\n");
	exit(2);
}

/* Split "Name: value" into the NULL-terminated pair list. */
static void
probe_add_header(struct probe *p, int *n, const char *arg)
{
	const char *colon = strchr(arg, ':');
	const char *v;

	if (colon == NULL || *n >= PROBE_MAX_HEADERS)
		probe_usage();
	for (v = colon + 1; *v == ' '; v++)
		;
	p->headers[2 * *n] = xstrndup(arg, (size_t)(colon - arg));
	p->headers[2 * *n + 1] = xstrdup(v);
	(*n)++;
}

int
main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "url", required_argument, NULL, 'u' },
		{ "ca", required_argument, NULL, 'a' },
		{ "connections", required_argument, NULL, 'n' },
		{ "max-queue", required_argument, NULL, 'q' },
		{ "timeout-ms", required_argument, NULL, 't' },
		{ "connect-timeout-ms", required_argument, NULL, 'T' },
		{ "count", required_argument, NULL, 'c' },
		{ "concurrency", required_argument, NULL, 'C' },
		{ "method", required_argument, NULL, 'm' },
		{ "body", required_argument, NULL, 'b' },
		{ "header", required_argument, NULL, 'H' },
		{ "pause-ms", required_argument, NULL, 'p' },
		{ "close-after-ms", required_argument, NULL, 'x' },
		{ "body-max", required_argument, NULL, 'B' },
		{ "close-after-answers", required_argument, NULL, 'X' },
		{ NULL, 0, NULL, 0 },
	};
	struct probe p = { .method = "GET", .count = 1, .concurrency = 1, .body_max = 65536 };
	struct htc_config cfg = { .connections = 1, .max_queue = 1024, .timeout_ms = 5000 };
	int64_t close_after = -1;
	struct event *closer = NULL;
	char *cause = NULL;
	int ch, nheaders = 0;

	while ((ch = getopt_long(argc, argv, "v", opts, NULL)) != -1) {
		switch (ch) {
		case 'u': cfg.base_url = optarg; break;
		case 'a': cfg.ca_file = optarg; break;
		case 'n': cfg.connections = atoi(optarg); break;
		case 'q': cfg.max_queue = atoi(optarg); break;
		case 't': cfg.timeout_ms = atoll(optarg); break;
		case 'T': cfg.connect_timeout_ms = atoll(optarg); break;
		case 'c': p.count = atoi(optarg); break;
		case 'C': p.concurrency = atoi(optarg); break;
		case 'm': p.method = optarg; break;
		case 'b': p.body = optarg; break;
		case 'H': probe_add_header(&p, &nheaders, optarg); break;
		case 'p': p.pause_ms = atoll(optarg); break;
		case 'x': close_after = atoll(optarg); break;
		case 'B': p.body_max = (size_t)atoll(optarg); break;
		case 'X': p.close_after_answers = atoi(optarg); break;
		case 'v': log_set_level(LOG_DEBUG); break;
		default: probe_usage();
		}
	}
	if (cfg.base_url == NULL || optind >= argc || p.count < 0 || p.concurrency < 1)
		probe_usage();
	if (cfg.connect_timeout_ms == 0)
		cfg.connect_timeout_ms = cfg.timeout_ms;
	p.paths = argv + optind;
	p.npaths = argc - optind;
	/* Like the daemon: a write to a closed socket must be an error, not a signal. */
	signal(SIGPIPE, SIG_IGN);
	p.base = event_base_new();
	if ((p.htc = htc_new(p.base, &cfg, &cause)) == NULL) {
		fprintf(stderr, "htc_probe: %s\n", cause);
		free(cause);
		event_base_free(p.base);
		return 2;
	}
	if (close_after >= 0) {
		struct timeval tv = { .tv_sec = close_after / 1000, .tv_usec = (close_after % 1000) * 1000 };

		closer = evtimer_new(p.base, probe_on_close, &p);
		evtimer_add(closer, &tv);
	}
	p.start_us = util_mono_us();
	probe_issue(&p);
	if (p.outstanding > 0 || p.issued < p.count)
		event_base_dispatch(p.base);
	probe_summary(&p);
	htc_free(p.htc);
	/* A name lookup given up by htc_free releases the resolver on the next turns. */
	for (int i = 0; i < 3; i++)
		event_base_loop(p.base, EVLOOP_NONBLOCK);
	if (closer != NULL)
		event_free(closer);
	for (int i = 0; i < 2 * nheaders; i++)
		free((char *)p.headers[i]);
	event_base_free(p.base);
	return 0;
}
