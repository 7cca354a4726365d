/*
 * webhook_load - load generator for orderflowd's POST /webhooks/tiktok.
 *
 * Usage: webhook_load -p PORT [-h HOST] -c CONNS -d SECONDS [-r RATE] [-n MAX]
 *                     -k APP_KEY -s APP_SECRET -S SHOP_ID [-t TYPE] [-O ORDERS]
 *                     [--ids FILE] [--prefix P] [--timeout SECONDS]
 *
 * Opens CONNS HTTP/1.1 keep-alive connections to HOST:PORT (default
 * 127.0.0.1; an IPv4 or IPv6 literal) with one request in flight on each, and
 * sends TikTok Shop webhooks signed like TikTok does (header Authorization =
 * hex HMAC-SHA256(key = APP_SECRET, msg = APP_KEY || body)):
 *   {"type":TYPE,"tts_notification_id":"<P><n>","shop_id":"SHOP_ID",
 *    "timestamp":NOW,"data":{"is_on_hold_order":false,"order_id":"<P><m>",
 *    "order_status":"AWAITING_SHIPMENT","update_time":NOW}}
 * n counts 1, 2, ... so notification ids are unique per run; P defaults to
 * 10 digits of time and 7 of pid.  Order ids are unique per request (m = n)
 * unless -O ORDERS is given: then m cycles over ORDERS values.  TYPE
 * defaults to 1.
 *
 * Without -r every connection sends its next request as soon as the previous
 * answer is in (full speed); with -r the aggregate RATE/s is paced by a timer,
 * slots spread evenly (a slot that finds every connection busy waits for one;
 * at most CONNS slots are carried over, the rest are skipped and show in the
 * achieved rate).  No new request starts after SECONDS or after MAX requests;
 * requests in flight then get to finish (within their timeout).  A request
 * not answered within --timeout (default 10 s) counts as an error and its
 * connection is reset; closed connections are reopened (failed connects back
 * off 10 ms..500 ms and count as errors).  SIGINT/SIGTERM stop the run early
 * the same way (a second one abandons the requests in flight).
 *
 * --ids FILE appends every acknowledged (2xx) tts_notification_id to FILE,
 * one a line, written out at least every 100 ms and at exit, so a test that
 * kill -9s the daemon mid-run can check every acknowledged id was stored.
 *
 * Output on stdout at the end, one figure a line:
 *   duration 10.002 s
 *   send rate 999.9/s (target 1000/s, 0 slots skipped)   ("(...)" with -r only)
 *   sent 10000
 *   acked 9990 (2xx)
 *   non-2xx 10 (503: 10)
 *   errors 0 (connect 0, timeout 0, closed 0, protocol 0)
 *   rate 998.8 acked/s
 *   latency p50 0.412 ms p99 1.950 ms p99.9 4.100 ms max 6.003 ms
 * Latency is from writing the request to having read the full response, over
 * every response (2xx or not), kept in a log-linear histogram (< 0.4% error;
 * max is exact); all zero when there was no response.  Exit status 0 when the
 * run happened, 1 on a usage or setup error (or a write error on --ids FILE).
 *
 * Build: gcc -std=c11 -D_GNU_SOURCE -O2 -Wall -Wextra -o webhook_load \
 *   tests/bench/webhook_load.c $(pkg-config --cflags --libs libevent libcrypto)
 */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/util.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#define MAX_CONNS 100000
#define MAX_HEADER_BYTES (64 * 1024)
#define MAX_LINE_BYTES (16 * 1024)
#define MAX_ARG_LEN 256
#define IDS_FLUSH_US 100000
#define RECONNECT_MIN_US 10000
#define RECONNECT_MAX_US 500000
#define PACE_MIN_US 20 /* shortest pacing timer; more slots per tick beyond */

/* ---- log-linear latency histogram (nanoseconds) ---- */

#define HIST_SUB_BITS 7
#define HIST_SUB (1u << HIST_SUB_BITS)
#define HIST_BUCKETS (HIST_SUB + (64 - HIST_SUB_BITS) * HIST_SUB)

struct hist {
	uint64_t count[HIST_BUCKETS];
	uint64_t n;
	uint64_t max;
};

static unsigned hist_index(uint64_t v)
{
	if (v < HIST_SUB)
		return (unsigned)v;
	unsigned msb = 63u - (unsigned)__builtin_clzll(v);
	unsigned shift = msb - HIST_SUB_BITS;
	unsigned sub = (unsigned)(v >> shift) & (HIST_SUB - 1);
	return HIST_SUB + shift * HIST_SUB + sub;
}

/* Midpoint of bucket i: within 1/256 of any value in the bucket. */
static uint64_t hist_value(unsigned i)
{
	if (i < HIST_SUB)
		return i;
	unsigned shift = (i - HIST_SUB) / HIST_SUB;
	uint64_t sub = (i - HIST_SUB) % HIST_SUB;
	uint64_t lo = (HIST_SUB + sub) << shift;
	return lo + ((UINT64_C(1) << shift) >> 1);
}

static void hist_add(struct hist *h, uint64_t v)
{
	h->count[hist_index(v)]++;
	h->n++;
	if (v > h->max)
		h->max = v;
}

/* Smallest recorded value v with at least ceil(q * n) values <= v. */
static uint64_t hist_quantile(const struct hist *h, double q)
{
	if (h->n == 0)
		return 0;
	double want = q * (double)h->n;
	uint64_t rank = (uint64_t)want;
	if ((double)rank < want)
		rank++;
	if (rank < 1)
		rank = 1;
	uint64_t seen = 0;
	for (unsigned i = 0; i < HIST_BUCKETS; i++) {
		seen += h->count[i];
		if (seen >= rank) {
			uint64_t v = hist_value(i);
			return v > h->max ? h->max : v;
		}
	}
	return h->max;
}

/* ---- configuration and run state ---- */

struct opts {
	const char *host;
	int port;
	int conns;
	double seconds;
	double rate;      /* 0 = full speed */
	uint64_t max;     /* 0 = unbounded */
	const char *app_key;
	const char *app_secret;
	const char *shop_id;
	long type;
	uint64_t orders;  /* 0 = unique order id per request */
	const char *ids_path;
	char prefix[MAX_ARG_LEN + 1];
	double timeout;
};

enum conn_state { C_DOWN, C_CONNECTING, C_IDLE, C_BUSY };
enum resp_state { R_STATUS, R_HEADERS, R_BODY_LEN, R_CHUNK_SIZE, R_CHUNK_DATA,
	R_CHUNK_CRLF, R_TRAILERS, R_BODY_EOF };

struct conn {
	int idx;
	enum conn_state state;
	struct bufferevent *bev;
	struct event *timer;      /* request/connect timeout, or reconnect delay */
	int64_t backoff_us;
	/* request in flight */
	uint64_t t_send_ns;
	char notif_id[MAX_ARG_LEN + 32];
	/* response parser */
	enum resp_state rs;
	int status;
	bool http10;
	bool conn_close;
	bool keep_alive;
	bool chunked;
	bool has_len;
	uint64_t remaining;
	size_t header_bytes;
};

struct status_count {
	int status;
	uint64_t n;
};

static struct opts O;
static struct event_base *base;
static struct sockaddr_storage peer;
static socklen_t peer_len;
static char host_header[MAX_ARG_LEN + 16];
static struct conn *conns;
static int *idle_stack;
static int idle_n;

static uint64_t t_start_ns, t_end_ns;
static uint64_t seq;               /* notification counter */
static uint64_t n_sent, n_acked, n_non2xx, n_in_flight;
static uint64_t e_connect, e_timeout, e_closed, e_protocol;
static struct status_count statuses[64];
static int n_statuses;
static uint64_t n_other_status;    /* beyond the statuses table */
static struct hist lat;

static bool stopping;
static bool aborting;
static struct event *deadline_ev, *pace_ev, *flush_ev, *sigint_ev, *sigterm_ev;
static uint64_t slots_skipped;

static FILE *ids_fp;
static bool ids_dirty;
static bool ids_error;

static char *reqbuf;      /* app_key || body, body signed in place */
static size_t reqbuf_cap;

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static struct timeval tv_from_us(int64_t us)
{
	struct timeval tv;
	if (us < 0)
		us = 0;
	tv.tv_sec = (time_t)(us / 1000000);
	tv.tv_usec = (suseconds_t)(us % 1000000);
	return tv;
}

static void conn_start(struct conn *c);
static void conn_reset(struct conn *c, int64_t delay_us);
static void conn_ready(struct conn *c);
static void maybe_finish(void);

/* ---- results ---- */

static void count_status(int status)
{
	for (int i = 0; i < n_statuses; i++) {
		if (statuses[i].status == status) {
			statuses[i].n++;
			return;
		}
	}
	if (n_statuses < (int)(sizeof statuses / sizeof statuses[0])) {
		statuses[n_statuses].status = status;
		statuses[n_statuses].n = 1;
		n_statuses++;
	} else {
		n_other_status++;
	}
}

static int cmp_status(const void *a, const void *b)
{
	const struct status_count *x = a, *y = b;
	return (x->status > y->status) - (x->status < y->status);
}

static void ids_flush(void)
{
	if (ids_fp && ids_dirty) {
		if (fflush(ids_fp) != 0 && !ids_error) {
			fprintf(stderr, "webhook_load: %s: %s\n", O.ids_path, strerror(errno));
			ids_error = true;
		}
		ids_dirty = false;
	}
}

static void flush_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd; (void)what; (void)arg;
	ids_flush();
}

/* ---- request pacing ---- */

/* Number of request slots available now (always "many" at full speed). */
static uint64_t slots_available(void)
{
	if (O.rate <= 0)
		return UINT64_MAX;
	double elapsed = (double)(now_ns() - t_start_ns) / 1e9;
	uint64_t due = (uint64_t)(elapsed * O.rate) + 1; /* slot 0 is at t=0 */
	uint64_t used = n_sent + slots_skipped;
	if (due <= used)
		return 0;
	uint64_t avail = due - used;
	if (avail > (uint64_t)O.conns) {
		/* Fell behind (every connection busy): do not burst. */
		slots_skipped += avail - (uint64_t)O.conns;
		avail = (uint64_t)O.conns;
	}
	return avail;
}

static void pace_arm(void)
{
	if (O.rate <= 0 || stopping || idle_n == 0 || evtimer_pending(pace_ev, NULL))
		return;
	/* Time of the next slot after the ones already used or skipped. */
	uint64_t next = n_sent + slots_skipped;
	double t_next = (double)next / O.rate; /* seconds since start */
	int64_t us = (int64_t)(t_next * 1e6) - (int64_t)((now_ns() - t_start_ns) / 1000);
	if (us < PACE_MIN_US)
		us = PACE_MIN_US;
	struct timeval tv = tv_from_us(us);
	evtimer_add(pace_ev, &tv);
}

static void pace_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd; (void)what; (void)arg;
	if (stopping)
		return;
	uint64_t avail = slots_available();
	while (avail > 0 && idle_n > 0 && !stopping) {
		struct conn *c = &conns[idle_stack[--idle_n]];
		conn_ready(c); /* sends: the connection is idle and a slot is free */
		avail--;
	}
	pace_arm();
}

/* ---- requests ---- */

static void sign_hex(const char *msg, size_t len, char out[65])
{
	unsigned char mac[EVP_MAX_MD_SIZE];
	unsigned int maclen = 0;
	static const char hexd[] = "0123456789abcdef";
	HMAC(EVP_sha256(), O.app_secret, (int)strlen(O.app_secret),
	     (const unsigned char *)msg, len, mac, &maclen);
	for (unsigned i = 0; i < maclen && i < 32; i++) {
		out[2 * i] = hexd[mac[i] >> 4];
		out[2 * i + 1] = hexd[mac[i] & 15];
	}
	out[64] = '\0';
}

static void stop_run(void);

static void send_request(struct conn *c)
{
	uint64_t n = ++seq;
	uint64_t order = O.orders ? (n - 1) % O.orders + 1 : n;
	long long now = (long long)time(NULL);
	size_t klen = strlen(O.app_key);

	snprintf(c->notif_id, sizeof c->notif_id, "%s%" PRIu64, O.prefix, n);
	int blen = snprintf(reqbuf + klen, reqbuf_cap - klen,
		"{\"type\":%ld,\"tts_notification_id\":\"%s\",\"shop_id\":\"%s\","
		"\"timestamp\":%lld,\"data\":{\"is_on_hold_order\":false,"
		"\"order_id\":\"%s%" PRIu64 "\",\"order_status\":\"AWAITING_SHIPMENT\","
		"\"update_time\":%lld}}",
		O.type, c->notif_id, O.shop_id, now, O.prefix, order, now);
	char sig[65];
	sign_hex(reqbuf, klen + (size_t)blen, sig);

	struct evbuffer *out = bufferevent_get_output(c->bev);
	evbuffer_add_printf(out,
		"POST /webhooks/tiktok HTTP/1.1\r\n"
		"Host: %s\r\n"
		"Content-Type: application/json\r\n"
		"Authorization: %s\r\n"
		"Content-Length: %d\r\n"
		"\r\n", host_header, sig, blen);
	evbuffer_add(out, reqbuf + klen, (size_t)blen);

	c->state = C_BUSY;
	c->rs = R_STATUS;
	c->header_bytes = 0;
	c->t_send_ns = now_ns();
	n_sent++;
	n_in_flight++;
	struct timeval tv = tv_from_us((int64_t)(O.timeout * 1e6));
	evtimer_add(c->timer, &tv);

	if (O.max && n_sent >= O.max)
		stop_run();
}

/* The connection is up and has nothing in flight: send or wait for a slot. */
static void conn_ready(struct conn *c)
{
	c->state = C_IDLE;
	if (stopping) {
		conn_reset(c, -1);
		return;
	}
	if (O.rate <= 0 || slots_available() > 0) {
		send_request(c);
		return;
	}
	idle_stack[idle_n++] = c->idx;
	pace_arm();
}

static void idle_remove(struct conn *c)
{
	for (int i = 0; i < idle_n; i++) {
		if (idle_stack[i] == c->idx) {
			idle_stack[i] = idle_stack[--idle_n];
			return;
		}
	}
}

/* The response to the request in flight is complete. */
static void response_done(struct conn *c)
{
	uint64_t t = now_ns();
	evtimer_del(c->timer);
	n_in_flight--;
	hist_add(&lat, t - c->t_send_ns);
	if (c->status >= 200 && c->status < 300) {
		n_acked++;
		if (ids_fp) {
			if (fprintf(ids_fp, "%s\n", c->notif_id) < 0 && !ids_error) {
				fprintf(stderr, "webhook_load: %s: %s\n", O.ids_path, strerror(errno));
				ids_error = true;
			}
			ids_dirty = true;
		}
	} else {
		n_non2xx++;
		count_status(c->status);
	}
	bool close_it = c->conn_close || (c->http10 && !c->keep_alive) || c->rs == R_BODY_EOF;
	c->backoff_us = 0;
	if (close_it || stopping) {
		conn_reset(c, 0);
	} else {
		c->state = C_IDLE;
		if (evbuffer_get_length(bufferevent_get_input(c->bev)) > 0) {
			/* Bytes nobody asked for. */
			e_protocol++;
			conn_reset(c, 0);
		} else {
			conn_ready(c);
		}
	}
	maybe_finish();
}

/* A request in flight failed: count it and reopen the connection. */
static void request_failed(struct conn *c, uint64_t *counter)
{
	(*counter)++;
	n_in_flight--;
	conn_reset(c, 0);
	maybe_finish();
}

/* ---- HTTP/1.1 response parser ---- */

static bool header_has_token(const char *v, const char *tok)
{
	size_t tl = strlen(tok);
	while (*v) {
		while (*v == ' ' || *v == '\t' || *v == ',')
			v++;
		const char *e = v;
		while (*e && *e != ',')
			e++;
		const char *te = e;
		while (te > v && (te[-1] == ' ' || te[-1] == '\t'))
			te--;
		if ((size_t)(te - v) == tl && strncasecmp(v, tok, tl) == 0)
			return true;
		v = e;
	}
	return false;
}

/* Returns false on a protocol error. */
static bool parse_status_line(struct conn *c, const char *line)
{
	int major, minor, status;
	char sp;
	if (sscanf(line, "HTTP/%d.%d %3d%c", &major, &minor, &status, &sp) < 3)
		return false;
	if (major != 1 || status < 100 || status > 999)
		return false;
	c->status = status;
	c->http10 = minor == 0;
	c->conn_close = false;
	c->keep_alive = false;
	c->chunked = false;
	c->has_len = false;
	c->remaining = 0;
	return true;
}

static bool parse_header(struct conn *c, char *line)
{
	char *colon = strchr(line, ':');
	if (!colon)
		return false;
	*colon = '\0';
	char *v = colon + 1;
	while (*v == ' ' || *v == '\t')
		v++;
	if (strcasecmp(line, "Content-Length") == 0) {
		char *end;
		errno = 0;
		unsigned long long n = strtoull(v, &end, 10);
		if (errno || end == v || (*end && *end != ' ' && *end != '\t'))
			return false;
		c->has_len = true;
		c->remaining = n;
	} else if (strcasecmp(line, "Transfer-Encoding") == 0) {
		if (header_has_token(v, "chunked"))
			c->chunked = true;
	} else if (strcasecmp(line, "Connection") == 0) {
		if (header_has_token(v, "close"))
			c->conn_close = true;
		if (header_has_token(v, "keep-alive"))
			c->keep_alive = true;
	}
	return true;
}

/* Headers done: pick how the body is delimited.  Returns true when the
 * response is already complete. */
static bool headers_done(struct conn *c)
{
	if (c->status == 204 || c->status == 304)
		return true;
	if (c->chunked) {
		c->rs = R_CHUNK_SIZE;
		return false;
	}
	if (c->has_len) {
		if (c->remaining == 0)
			return true;
		c->rs = R_BODY_LEN;
		return false;
	}
	c->rs = R_BODY_EOF;
	return false;
}

/* Parse what has arrived.  Returns 1 when a response completed, 0 when more
 * input is needed, -1 on a protocol error. */
static int parse_response(struct conn *c, struct evbuffer *in)
{
	for (;;) {
		size_t len = 0;
		char *line;
		switch (c->rs) {
		case R_STATUS:
		case R_HEADERS:
		case R_CHUNK_SIZE:
		case R_TRAILERS:
			line = evbuffer_readln(in, &len, EVBUFFER_EOL_CRLF);
			if (!line) {
				if (evbuffer_get_length(in) > MAX_LINE_BYTES)
					return -1;
				return 0;
			}
			c->header_bytes += len + 2;
			if (c->header_bytes > MAX_HEADER_BYTES) {
				free(line);
				return -1;
			}
			if (c->rs == R_STATUS) {
				bool ok = parse_status_line(c, line);
				free(line);
				if (!ok)
					return -1;
				c->rs = R_HEADERS;
			} else if (c->rs == R_HEADERS) {
				if (len == 0) {
					free(line);
					if (c->status < 200) {
						/* 1xx interim answer: the real one follows. */
						c->rs = R_STATUS;
						continue;
					}
					if (headers_done(c))
						return 1;
					continue;
				}
				bool ok = parse_header(c, line);
				free(line);
				if (!ok)
					return -1;
			} else if (c->rs == R_CHUNK_SIZE) {
				char *end;
				errno = 0;
				unsigned long long n = strtoull(line, &end, 16);
				bool ok = !errno && end != line && (*end == '\0' || *end == ';' ||
					*end == ' ' || *end == '\t');
				free(line);
				if (!ok)
					return -1;
				c->remaining = n;
				c->rs = n ? R_CHUNK_DATA : R_TRAILERS;
			} else { /* R_TRAILERS */
				free(line);
				if (len == 0)
					return 1;
			}
			break;
		case R_BODY_LEN:
		case R_CHUNK_DATA: {
			size_t have = evbuffer_get_length(in);
			size_t take = have < c->remaining ? have : (size_t)c->remaining;
			evbuffer_drain(in, take);
			c->remaining -= take;
			if (c->remaining > 0)
				return 0;
			if (c->rs == R_BODY_LEN)
				return 1;
			c->rs = R_CHUNK_CRLF;
			break;
		}
		case R_CHUNK_CRLF:
			line = evbuffer_readln(in, &len, EVBUFFER_EOL_CRLF);
			if (!line)
				return evbuffer_get_length(in) > 2 ? -1 : 0;
			free(line);
			if (len != 0)
				return -1;
			c->rs = R_CHUNK_SIZE;
			break;
		case R_BODY_EOF:
			evbuffer_drain(in, evbuffer_get_length(in));
			return 0;
		}
	}
}

/* ---- connections ---- */

static void read_cb(struct bufferevent *bev, void *arg)
{
	struct conn *c = arg;
	struct evbuffer *in = bufferevent_get_input(bev);
	if (c->state != C_BUSY) {
		/* Data with no request in flight (e.g. an early 408). */
		evbuffer_drain(in, evbuffer_get_length(in));
		if (c->state == C_IDLE) {
			idle_remove(c);
			e_protocol++;
			conn_reset(c, 0);
			maybe_finish();
		}
		return;
	}
	int r = parse_response(c, in);
	if (r > 0)
		response_done(c);
	else if (r < 0)
		request_failed(c, &e_protocol);
}

static void event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct conn *c = arg;
	(void)bev;
	if (what & BEV_EVENT_CONNECTED) {
		evtimer_del(c->timer);
		c->backoff_us = 0;
		conn_ready(c);
		maybe_finish();
		return;
	}
	if (!(what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)))
		return;
	switch (c->state) {
	case C_CONNECTING:
		e_connect++;
		c->backoff_us = c->backoff_us ? c->backoff_us * 2 : RECONNECT_MIN_US;
		if (c->backoff_us > RECONNECT_MAX_US)
			c->backoff_us = RECONNECT_MAX_US;
		conn_reset(c, c->backoff_us);
		maybe_finish();
		break;
	case C_BUSY:
		if ((what & BEV_EVENT_EOF) && c->rs == R_BODY_EOF) {
			/* Body delimited by the end of the connection. */
			parse_response(c, bufferevent_get_input(bev));
			response_done(c);
			break;
		}
		request_failed(c, &e_closed);
		break;
	case C_IDLE:
		/* The server closed an idle keep-alive connection: just reopen. */
		idle_remove(c);
		conn_reset(c, 0);
		maybe_finish();
		break;
	case C_DOWN:
		break;
	}
}

static void timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct conn *c = arg;
	(void)fd; (void)what;
	switch (c->state) {
	case C_DOWN:
		conn_start(c);
		break;
	case C_CONNECTING:
		e_connect++; /* a connect timeout is a connection failure */
		conn_reset(c, 0);
		maybe_finish();
		break;
	case C_BUSY:
		request_failed(c, &e_timeout);
		break;
	case C_IDLE:
		break;
	}
}

/* Drop the connection; reopen it after delay_us (0 = now, < 0 = never). */
static void conn_reset(struct conn *c, int64_t delay_us)
{
	if (c->bev) {
		bufferevent_free(c->bev);
		c->bev = NULL;
	}
	evtimer_del(c->timer);
	c->state = C_DOWN;
	if (stopping || delay_us < 0)
		return;
	struct timeval tv = tv_from_us(delay_us);
	evtimer_add(c->timer, &tv);
}

static void conn_start(struct conn *c)
{
	if (stopping)
		return;
	evutil_socket_t fd = socket(peer.ss_family, SOCK_STREAM, 0);
	if (fd < 0) {
		fprintf(stderr, "webhook_load: socket: %s\n", strerror(errno));
		e_connect++;
		conn_reset(c, RECONNECT_MAX_US);
		return;
	}
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	evutil_make_socket_nonblocking(fd);
	evutil_make_socket_closeonexec(fd);
	c->bev = bufferevent_socket_new(base, fd, BEV_OPT_CLOSE_ON_FREE);
	if (!c->bev) {
		evutil_closesocket(fd);
		e_connect++;
		conn_reset(c, RECONNECT_MAX_US);
		return;
	}
	bufferevent_setcb(c->bev, read_cb, NULL, event_cb, c);
	bufferevent_enable(c->bev, EV_READ | EV_WRITE);
	c->state = C_CONNECTING;
	struct timeval tv = tv_from_us((int64_t)(O.timeout * 1e6));
	evtimer_add(c->timer, &tv);
	if (bufferevent_socket_connect(c->bev, (struct sockaddr *)&peer, (int)peer_len) < 0) {
		/* Immediate failure: the event callback has not run. */
		e_connect++;
		c->backoff_us = c->backoff_us ? c->backoff_us * 2 : RECONNECT_MIN_US;
		if (c->backoff_us > RECONNECT_MAX_US)
			c->backoff_us = RECONNECT_MAX_US;
		conn_reset(c, c->backoff_us);
	}
}

/* ---- run control ---- */

static void maybe_finish(void)
{
	if (stopping && (n_in_flight == 0 || aborting))
		event_base_loopbreak(base);
}

/* No new requests from now on; idle or reconnecting connections close. */
static void stop_run(void)
{
	if (stopping)
		return;
	stopping = true;
	evtimer_del(pace_ev);
	evtimer_del(deadline_ev);
	idle_n = 0;
	for (int i = 0; i < O.conns; i++) {
		struct conn *c = &conns[i];
		if (c->state != C_BUSY)
			conn_reset(c, -1);
	}
	maybe_finish();
}

static void deadline_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd; (void)what; (void)arg;
	stop_run();
}

static void signal_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd; (void)what; (void)arg;
	if (stopping) {
		aborting = true;
		event_base_loopbreak(base);
		return;
	}
	stop_run();
}

/* ---- command line ---- */

static void usage(FILE *f)
{
	fprintf(f,
		"usage: webhook_load -p PORT [-h HOST] -c CONNS -d SECONDS [-r RATE] [-n MAX]\n"
		"                    -k APP_KEY -s APP_SECRET -S SHOP_ID [-t TYPE] [-O ORDERS]\n"
		"                    [--ids FILE] [--prefix P] [--timeout SECONDS]\n");
}

static bool parse_u64(const char *s, uint64_t lo, uint64_t hi, uint64_t *out)
{
	char *end;
	if (!s || !*s || *s == '-' || *s == '+')
		return false;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno || *end || v < lo || v > hi)
		return false;
	*out = v;
	return true;
}

static bool parse_pos_double(const char *s, double hi, double *out)
{
	char *end;
	if (!s || !*s)
		return false;
	errno = 0;
	double v = strtod(s, &end);
	if (errno || *end || !(v > 0) || v > hi)
		return false;
	*out = v;
	return true;
}

/* Safe to put between JSON quotes unescaped. */
static bool json_plain(const char *s)
{
	if (strlen(s) > MAX_ARG_LEN)
		return false;
	for (const unsigned char *p = (const unsigned char *)s; *p; p++)
		if (*p < 0x20 || *p == '"' || *p == '\\' || *p == 0x7f)
			return false;
	return true;
}

static bool bad(const char *what, const char *val)
{
	fprintf(stderr, "webhook_load: invalid %s: \"%s\"\n", what, val ? val : "");
	return false;
}

static bool parse_args(int argc, char **argv)
{
	static const struct option longopts[] = {
		{"ids", required_argument, NULL, 'I'},
		{"prefix", required_argument, NULL, 'P'},
		{"timeout", required_argument, NULL, 'T'},
		{"help", no_argument, NULL, 'H'},
		{NULL, 0, NULL, 0},
	};
	uint64_t u;
	bool have_prefix = false;

	O.host = "127.0.0.1";
	O.type = 1;
	O.timeout = 10;
	int ch;
	while ((ch = getopt_long(argc, argv, "p:h:c:d:r:n:k:s:S:t:O:", longopts, NULL)) != -1) {
		switch (ch) {
		case 'p':
			if (!parse_u64(optarg, 1, 65535, &u))
				return bad("port (-p)", optarg);
			O.port = (int)u;
			break;
		case 'h':
			O.host = optarg;
			break;
		case 'c':
			if (!parse_u64(optarg, 1, MAX_CONNS, &u))
				return bad("connection count (-c)", optarg);
			O.conns = (int)u;
			break;
		case 'd':
			if (!parse_pos_double(optarg, 1e7, &O.seconds))
				return bad("duration (-d)", optarg);
			break;
		case 'r':
			if (!parse_pos_double(optarg, 1e9, &O.rate))
				return bad("rate (-r)", optarg);
			break;
		case 'n':
			if (!parse_u64(optarg, 1, UINT64_MAX / 2, &O.max))
				return bad("request count (-n)", optarg);
			break;
		case 'k':
			if (!*optarg || strlen(optarg) > MAX_ARG_LEN)
				return bad("app key (-k)", optarg);
			O.app_key = optarg;
			break;
		case 's':
			if (!*optarg || strlen(optarg) > MAX_ARG_LEN)
				return bad("app secret (-s)", optarg);
			O.app_secret = optarg;
			break;
		case 'S':
			if (!*optarg || !json_plain(optarg))
				return bad("shop id (-S)", optarg);
			O.shop_id = optarg;
			break;
		case 't':
			if (!parse_u64(optarg, 0, INT_MAX, &u))
				return bad("type (-t)", optarg);
			O.type = (long)u;
			break;
		case 'O':
			if (!parse_u64(optarg, 1, UINT64_MAX / 2, &O.orders))
				return bad("order count (-O)", optarg);
			break;
		case 'I':
			if (!*optarg)
				return bad("ids file (--ids)", optarg);
			O.ids_path = optarg;
			break;
		case 'P':
			if (!json_plain(optarg))
				return bad("prefix (--prefix)", optarg);
			snprintf(O.prefix, sizeof O.prefix, "%s", optarg);
			have_prefix = true;
			break;
		case 'T':
			if (!parse_pos_double(optarg, 3600, &O.timeout))
				return bad("timeout (--timeout)", optarg);
			break;
		case 'H':
			usage(stdout);
			exit(0);
		default:
			usage(stderr);
			return false;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "webhook_load: unexpected argument: %s\n", argv[optind]);
		usage(stderr);
		return false;
	}
	const char *missing = !O.port ? "-p PORT" : !O.conns ? "-c CONNS" :
		!(O.seconds > 0) ? "-d SECONDS" : !O.app_key ? "-k APP_KEY" :
		!O.app_secret ? "-s APP_SECRET" : !O.shop_id ? "-S SHOP_ID" : NULL;
	if (missing) {
		fprintf(stderr, "webhook_load: missing %s\n", missing);
		usage(stderr);
		return false;
	}
	if (!have_prefix)
		snprintf(O.prefix, sizeof O.prefix, "%010lld%07ld",
			 (long long)time(NULL) % 10000000000LL, (long)getpid() % 10000000L);

	memset(&peer, 0, sizeof peer);
	struct sockaddr_in *s4 = (struct sockaddr_in *)&peer;
	struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&peer;
	if (inet_pton(AF_INET, O.host, &s4->sin_addr) == 1) {
		s4->sin_family = AF_INET;
		s4->sin_port = htons((uint16_t)O.port);
		peer_len = sizeof *s4;
		snprintf(host_header, sizeof host_header, "%s:%d", O.host, O.port);
	} else if (strlen(O.host) <= MAX_ARG_LEN &&
		   inet_pton(AF_INET6, O.host, &s6->sin6_addr) == 1) {
		s6->sin6_family = AF_INET6;
		s6->sin6_port = htons((uint16_t)O.port);
		peer_len = sizeof *s6;
		snprintf(host_header, sizeof host_header, "[%s]:%d", O.host, O.port);
	} else {
		return bad("host (-h, an IP literal)", O.host);
	}
	return true;
}

/* ---- main ---- */

static void print_results(void)
{
	double secs = (double)(t_end_ns - t_start_ns) / 1e9;
	if (secs <= 0)
		secs = 1e-9;
	printf("duration %.3f s\n", secs);
	if (O.rate > 0)
		printf("send rate %.1f/s (target %g/s, %" PRIu64 " slots skipped)\n",
		       (double)n_sent / secs, O.rate, slots_skipped);
	else
		printf("send rate %.1f/s\n", (double)n_sent / secs);
	printf("sent %" PRIu64 "\n", n_sent);
	printf("acked %" PRIu64 " (2xx)\n", n_acked);
	printf("non-2xx %" PRIu64, n_non2xx);
	if (n_statuses || n_other_status) {
		qsort(statuses, (size_t)n_statuses, sizeof statuses[0], cmp_status);
		printf(" (");
		for (int i = 0; i < n_statuses; i++)
			printf("%s%d: %" PRIu64, i ? ", " : "", statuses[i].status, statuses[i].n);
		if (n_other_status)
			printf("%sother: %" PRIu64, n_statuses ? ", " : "", n_other_status);
		printf(")");
	}
	printf("\n");
	printf("errors %" PRIu64 " (connect %" PRIu64 ", timeout %" PRIu64 ", closed %" PRIu64
	       ", protocol %" PRIu64 ")\n", e_connect + e_timeout + e_closed + e_protocol,
	       e_connect, e_timeout, e_closed, e_protocol);
	printf("rate %.1f acked/s\n", (double)n_acked / secs);
	printf("latency p50 %.3f ms p99 %.3f ms p99.9 %.3f ms max %.3f ms\n",
	       (double)hist_quantile(&lat, 0.50) / 1e6, (double)hist_quantile(&lat, 0.99) / 1e6,
	       (double)hist_quantile(&lat, 0.999) / 1e6, (double)lat.max / 1e6);
	if (aborting && n_in_flight)
		printf("abandoned %" PRIu64 " (in flight at the second signal)\n", n_in_flight);
}

int main(int argc, char **argv)
{
	if (!parse_args(argc, argv))
		return 1;

	signal(SIGPIPE, SIG_IGN);
	reqbuf_cap = strlen(O.app_key) + 4 * MAX_ARG_LEN + 512;
	reqbuf = malloc(reqbuf_cap);
	conns = calloc((size_t)O.conns, sizeof *conns);
	idle_stack = calloc((size_t)O.conns, sizeof *idle_stack);
	if (!reqbuf || !conns || !idle_stack) {
		fprintf(stderr, "webhook_load: out of memory\n");
		return 1;
	}
	memcpy(reqbuf, O.app_key, strlen(O.app_key));

	if (O.ids_path) {
		ids_fp = fopen(O.ids_path, "a");
		if (!ids_fp) {
			fprintf(stderr, "webhook_load: %s: %s\n", O.ids_path, strerror(errno));
			return 1;
		}
		setvbuf(ids_fp, NULL, _IOFBF, 1 << 16);
	}

	struct event_config *cfg = event_config_new();
	if (!cfg) {
		fprintf(stderr, "webhook_load: event_config_new failed\n");
		return 1;
	}
	event_config_set_flag(cfg, EVENT_BASE_FLAG_PRECISE_TIMER);
	event_config_set_flag(cfg, EVENT_BASE_FLAG_NOLOCK);
	base = event_base_new_with_config(cfg);
	event_config_free(cfg);
	if (!base) {
		fprintf(stderr, "webhook_load: event_base_new failed\n");
		return 1;
	}
	deadline_ev = evtimer_new(base, deadline_cb, NULL);
	pace_ev = evtimer_new(base, pace_cb, NULL);
	flush_ev = event_new(base, -1, EV_PERSIST, flush_cb, NULL);
	sigint_ev = evsignal_new(base, SIGINT, signal_cb, NULL);
	sigterm_ev = evsignal_new(base, SIGTERM, signal_cb, NULL);
	if (!deadline_ev || !pace_ev || !flush_ev || !sigint_ev || !sigterm_ev) {
		fprintf(stderr, "webhook_load: event_new failed\n");
		return 1;
	}
	evsignal_add(sigint_ev, NULL);
	evsignal_add(sigterm_ev, NULL);
	for (int i = 0; i < O.conns; i++) {
		conns[i].idx = i;
		conns[i].timer = evtimer_new(base, timer_cb, &conns[i]);
		if (!conns[i].timer) {
			fprintf(stderr, "webhook_load: event_new failed\n");
			return 1;
		}
	}

	t_start_ns = now_ns();
	struct timeval tv = tv_from_us((int64_t)(O.seconds * 1e6));
	evtimer_add(deadline_ev, &tv);
	if (ids_fp) {
		struct timeval ftv = tv_from_us(IDS_FLUSH_US);
		event_add(flush_ev, &ftv);
	}
	for (int i = 0; i < O.conns; i++)
		conn_start(&conns[i]);

	event_base_dispatch(base);
	t_end_ns = now_ns();

	ids_flush();
	if (ids_fp && fclose(ids_fp) != 0 && !ids_error) {
		fprintf(stderr, "webhook_load: %s: %s\n", O.ids_path, strerror(errno));
		ids_error = true;
	}
	ids_fp = NULL;

	print_results();
	fflush(stdout);

	for (int i = 0; i < O.conns; i++) {
		if (conns[i].bev)
			bufferevent_free(conns[i].bev);
		event_free(conns[i].timer);
	}
	event_free(deadline_ev);
	event_free(pace_ev);
	event_free(flush_ev);
	event_free(sigint_ev);
	event_free(sigterm_ev);
	event_base_free(base);
	free(conns);
	free(idle_stack);
	free(reqbuf);
	return ids_error ? 1 : 0;
}
