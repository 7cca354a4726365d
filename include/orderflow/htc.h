/*
 * htc: an HTTP/1.1 client over TLS (or plain TCP) to ONE upstream origin,
 * owned by one worker.
 *
 * The origin is a base URL ("https://host[:port]" with an optional path
 * prefix; "http://" is accepted for tests against a local plain server).
 * The client keeps up to `connections` keep-alive connections to it
 * (evhttp_connection over bufferevent_openssl); a request goes to an idle
 * connection, else opens a new one if under the limit, else waits in a
 * bounded FIFO.  A connection that closes or fails is freed and replaced
 * by a fresh one (fresh SSL object) on demand, never reused.
 *
 * TLS: peer verification is always on (SSL_VERIFY_PEER, hostname or IP
 * checked against the certificate, SNI sent for names), trust from
 * ca_file when set, else the system's default paths.  TLS 1.2 minimum.
 *
 * Host names are resolved with an evdns_base (nonblocking) created only
 * when the host is not an IP literal: one lookup at a time, its address
 * reused for new connections for 60 s and dropped when a connect to it
 * fails.  A failed lookup fails the requests waiting for a new connection
 * (HTC_ECONNECT).  When htc_free runs during a lookup, the resolver is
 * freed by the owner's loop a turn or two later (or leaks if it never
 * runs again).
 *
 * Every request has a deadline (timeout_ms, connect and queue wait
 * included): the callback then gets HTC_ETIMEOUT.  Bodies over
 * HTC_MAX_BODY are refused (HTC_EPROTO).  The callback runs exactly once
 * per htc_request that returned true, on the owner's loop, never from
 * inside htc_request.  There are no automatic retries: a request that
 * failed on a kept-alive connection the server had just closed gets
 * HTC_EPROTO, and the caller decides whether to send it again.
 *
 * Owned and called by one worker thread; the counters may be read by any.
 * A callback may call htc_request and htc_close, but not htc_free.  The
 * process must ignore SIGPIPE (writes to a closed socket would raise it).
 */
#ifndef ORDERFLOW_HTC_H
#define ORDERFLOW_HTC_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct event_base;
struct htc;

/* Largest response body accepted. */
#define HTC_MAX_BODY (8 * 1024 * 1024)

enum htc_error {
	HTC_OK,		/* a response arrived; see status and body */
	HTC_ECONNECT,	/* could not connect, TLS handshake or verification failed */
	HTC_ETIMEOUT,	/* no complete response within timeout_ms, or no connection
			   within connect_timeout_ms; error_text starts with
			   "connect timeout" (the request was not sent), "read
			   timeout" or "timeout: no free connection" (queued) */
	HTC_EPROTO,	/* malformed response, body too large, connection dropped
			   mid-way; also a request that cannot be sent (unknown
			   method, bad header, spaces in the path) */
	HTC_ECLOSED,	/* the client was closed before an answer (shutdown) */
	HTC_EFULL,	/* the wait queue was full; never passed to a callback:
			   htc_request returns false instead */
};

struct htc_config {
	const char	*base_url;	/* https://host[:port][/prefix] */
	const char	*ca_file;	/* PEM bundle; NULL or "" = system default */
	int		connections;	/* keep-alive connections, 1..256 */
	int		max_queue;	/* requests waiting for a connection */
	int64_t		connect_timeout_ms;	/* TCP + TLS handshake */
	int64_t		timeout_ms;	/* whole request, connect included */
};

struct htc_response {
	enum htc_error	error;
	const char	*error_text;	/* human readable, for logs and last_error; "" on HTC_OK */
	int		status;		/* HTTP status, 0 unless HTC_OK */
	const char	*body;		/* NUL terminated, may be "" (valid during the callback) */
	size_t		body_len;
	const char	*retry_after;	/* Retry-After header or NULL (valid during the callback) */
};

typedef void htc_cb(const struct htc_response *r, void *arg);

struct htc_stats {
	atomic_ullong	requests;	/* requests completed (any outcome) */
	atomic_ullong	errors;		/* requests that ended in an htc_error */
	atomic_ullong	connects;	/* connections opened */
	atomic_int	open;		/* connections open now */
	atomic_int	waiting;	/* requests in the wait queue */
};

/* NULL and *cause (caller frees) when the URL, a limit or the CA file is unusable. */
struct htc *htc_new(struct event_base *base, const struct htc_config *cfg, char **cause);
/*
 * Send method ("GET"/"POST") to path_and_query (appended to the base URL's
 * prefix), with extra headers (name/value pairs, NULL-terminated array, may
 * be NULL) and an optional body (Content-Type application/json when
 * body != NULL; Content-Length always for POST/PUT/PATCH).  Headers and
 * body are copied.  Returns false only when the wait queue is full (cb is
 * not called), or from a callback that htc_free runs.  After htc_close,
 * the callback gets HTC_ECLOSED on the next loop turn.
 */
bool htc_request(struct htc *c, const char *method, const char *path_and_query,
    const char *const *headers, const char *body, size_t body_len, htc_cb *cb, void *arg);
/*
 * Fail every pending request with HTC_ECLOSED (callbacks run now, in
 * flight ones first) and close connections; safe from inside a callback.
 */
void htc_close(struct htc *c);
/* htc_close, then free everything; never from inside an htc callback. */
void htc_free(struct htc *c);
const struct htc_stats *htc_stats(const struct htc *c);
/* The host[:port] of the base URL, for logs. */
const char *htc_origin(const struct htc *c);

#endif
