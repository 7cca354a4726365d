/*
 * htc: an outbound HTTP/1.1 client to one origin, over TLS or plain TCP.
 *
 * A request waits in c->queue until htc_pump gives it an idle connection
 * or a new one (up to c->max_conns).  A connection carries one request at
 * a time and lives only once: libevent 2.1 cannot reconnect an SSL
 * bufferevent, so a close or an error marks it dead, htc_on_later frees
 * it on a later turn (never inside its own callbacks), and a fresh one is
 * opened when a request needs it.  Each connection moves CONNECTING ->
 * BUSY <-> IDLE -> DEAD; htc_conn_set_state is the only place that
 * changes it and moves it to the list of its state.
 *
 * libevent owns its evhttp_request and frees it after the callback; our
 * struct htc_req lives apart and is reached through conn->req.  Giving up
 * on a request (deadline, htc_close) is "conn->req = NULL, kill the
 * connection", so a late callback from that connection finds no request
 * and does nothing.
 *
 * Whatever must not run on the caller's stack (callbacks for requests
 * refused at once, starting connections, freeing dead ones) goes through
 * one event, c->later, made active with event_active.
 *
 * Host names are resolved here, not by the bufferevent: one lookup at a
 * time, its address kept for HTC_ADDR_TTL_US and dropped when a connect
 * to it fails; connections then connect to the numeric address.  A lookup
 * owned by a bufferevent_openssl cannot be cancelled and pins the
 * bufferevent (and its SSL) until it ends; ours can be given up in
 * htc_free, which leaves the resolver to be freed by the lookup's own
 * (deferred) callback, since freeing it first would be a use after free.
 */
#include "config.h"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/dns.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <event2/util.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/queue.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "orderflow/htc.h"
#include "orderflow/log.h"
#include "orderflow/util.h"

/* Largest response header block accepted. */
#define HTC_MAX_HEADERS (64 * 1024)
/*
 * An idle connection older than this is closed instead of reused: servers
 * drop idle keep-alive connections after 60 s or more, and a request sent
 * on one they are closing at that moment would fail.
 */
#define HTC_IDLE_MAX_US (45 * 1000000LL)
#define HTC_MAX_CONNECTIONS 256
/* How long a resolved address is used before the name is looked up again. */
#define HTC_ADDR_TTL_US (60 * 1000000LL)

enum htc_conn_state {
	HTC_CONN_CONNECTING,	/* c->busy; first request sent, TCP/TLS not known to be up */
	HTC_CONN_BUSY,		/* c->busy; up, a request in flight (or just answered) */
	HTC_CONN_IDLE,		/* c->idle; up, waiting for a request */
	HTC_CONN_DEAD,		/* c->dead; closed or failed, freed by htc_on_later */
};

static const char *const htc_conn_state_names[] = { "connecting", "busy", "idle", "dead" };

struct htc_conn {
	TAILQ_ENTRY(htc_conn) entry;	/* in the list of its state */
	struct htc	*c;
	unsigned	id;		/* for logs */
	enum htc_conn_state state;
	struct evhttp_connection *evcon; /* owns bev, which owns ssl and the socket */
	struct bufferevent *bev;
	SSL		*ssl;		/* NULL for http:// */
	struct event	*connect_timer;	/* connect_timeout_ms after the start */
	struct htc_req	*req;		/* in flight; NULL when idle or given up */
	enum evhttp_request_error last_error;	/* from the error callback */
	bool		has_error;	/* last_error is set for req */
	bool		up;		/* TCP and TLS handshake finished */
	char		addr[64];	/* numeric address it connects to */
	bool		closed;		/* libevent closed the socket */
	int64_t		idle_since;	/* mono us, while idle */
	unsigned	served;		/* responses read */
};

TAILQ_HEAD(htc_conn_list, htc_conn);

struct htc_req {
	TAILQ_ENTRY(htc_req) entry;	/* in c->queue or c->done; unlinked while sent */
	struct htc	*c;
	struct htc_conn	*conn;		/* while sent */
	enum evhttp_cmd_type cmd;
	const char	*method;	/* static name, for logs */
	char		*uri;		/* prefix + path_and_query */
	char		**headers;	/* copied name/value pairs, NULL-terminated */
	char		*body;		/* copy; NULL = no body */
	size_t		body_len;
	htc_cb		*cb;
	void		*arg;
	struct event	*deadline;	/* timeout_ms after htc_request */
	enum htc_error	error;		/* outcome, for requests in c->done */
	char		*error_text;
};

TAILQ_HEAD(htc_req_list, htc_req);

/* One name lookup in progress; outlives the client when htc_free gives up on it. */
struct htc_lookup {
	struct htc	*c;		/* NULL once htc_free gave up on it */
	struct evdns_base *dns;		/* the resolver, freed after an orphaned lookup */
	struct event_base *base;
};

struct htc {
	struct event_base *base;
	struct evdns_base *dns;		/* NULL when the host is an IP literal */
	struct htc_lookup *lookup;	/* name lookup in progress, or NULL */
	struct evdns_getaddrinfo_request *lookup_req;	/* its handle, for cancelling */
	char		addr[64];	/* numeric address to connect to, "" when none */
	int64_t		addr_expires;	/* mono us; 0 = never (IP literal) */
	char		*resolve_error;	/* last lookup failed: fails queued requests once */
	SSL_CTX		*ssl_ctx;	/* NULL for http:// */
	char		*host;		/* without [] for IPv6 */
	int		port;
	bool		host_is_ip;
	char		*origin;	/* host[:port] as in the URL; the Host header */
	char		*prefix;	/* path prefix without the trailing '/', may be "" */
	int		max_conns, max_queue;
	int64_t		connect_timeout_ms, timeout_ms;
	struct htc_conn_list busy, idle, dead;
	int		nbusy, nidle;
	struct htc_req_list queue;	/* waiting for a connection, FIFO */
	int		nqueue;
	struct htc_req_list done;	/* refused at once; answered by htc_on_later */
	struct event	*later;		/* deferred work, see top */
	unsigned	next_id;
	bool		closed;		/* htc_close ran: new requests get HTC_ECLOSED */
	bool		freeing;	/* htc_free runs: new requests are refused */
	struct htc_stats stats;
};

static void htc_schedule(struct htc *c);

static const struct {
	const char		*name;
	enum evhttp_cmd_type	cmd;
} htc_methods[] = {
	{ "GET", EVHTTP_REQ_GET }, { "POST", EVHTTP_REQ_POST }, { "PUT", EVHTTP_REQ_PUT },
	{ "DELETE", EVHTTP_REQ_DELETE }, { "PATCH", EVHTTP_REQ_PATCH },
	{ "HEAD", EVHTTP_REQ_HEAD }, { "OPTIONS", EVHTTP_REQ_OPTIONS },
};

static void
htc_timer_add(struct event *ev, int64_t ms)
{
	struct timeval tv = { .tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000 };

	evtimer_add(ev, &tv);
}

static void
htc_count(atomic_ullong *n)
{
	atomic_fetch_add_explicit(n, 1, memory_order_relaxed);
}

/* Publish the figures other threads read. */
static void
htc_publish(struct htc *c)
{
	atomic_store_explicit(&c->stats.open, c->nbusy + c->nidle, memory_order_relaxed);
	atomic_store_explicit(&c->stats.waiting, c->nqueue, memory_order_relaxed);
}

/* ---- requests ---- */

static void
htc_req_free(struct htc_req *req)
{
	if (req->headers != NULL)
		for (char **h = req->headers; *h != NULL; h++)
			free(*h);
	free(req->headers);
	free(req->uri);
	free(req->body);
	free(req->error_text);
	if (req->deadline != NULL)
		event_free(req->deadline);
	free(req);
}

/* Hand the outcome to the caller and forget the request. */
static void
htc_req_finish(struct htc_req *req, const struct htc_response *r)
{
	struct htc *c = req->c;

	evtimer_del(req->deadline);
	htc_count(&c->stats.requests);
	if (r->error != HTC_OK) {
		htc_count(&c->stats.errors);
		log_debug("http request failed", "origin=%s method=%s uri=%s error=%s",
		    c->origin, req->method, log_quote(req->uri), log_quote(r->error_text));
	}
	req->cb(r, req->arg);
	htc_req_free(req);
}

static void PRINTFLIKE(3, 4)
htc_req_fail(struct htc_req *req, enum htc_error error, const char *fmt, ...)
{
	struct htc_response r = { .error = error, .body = "" };
	char text[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	r.error_text = text;
	htc_req_finish(req, &r);
}

/* Answer req on the next turn with an outcome decided now (htc_request must not call back). */
static void PRINTFLIKE(3, 4)
htc_req_fail_later(struct htc_req *req, enum htc_error error, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	req->error = error;
	req->error_text = xvasprintf(fmt, ap);
	va_end(ap);
	evtimer_del(req->deadline);
	TAILQ_INSERT_TAIL(&req->c->done, req, entry);
	htc_schedule(req->c);
}

/* Answer the requests decided earlier; those added meanwhile wait for the next turn. */
static void
htc_deliver_done(struct htc *c)
{
	struct htc_req_list now = TAILQ_HEAD_INITIALIZER(now);
	struct htc_req *req;

	TAILQ_CONCAT(&now, &c->done, entry);
	while ((req = TAILQ_FIRST(&now)) != NULL) {
		TAILQ_REMOVE(&now, req, entry);
		htc_req_fail(req, req->error, "%s", req->error_text);
	}
}

/* A header name must be an HTTP token; values must not break the header block. */
static bool
htc_header_ok(const char *name, const char *value)
{
	if (name[0] == '\0')
		return false;
	for (const unsigned char *p = (const unsigned char *)name; *p != '\0'; p++)
		if (*p <= ' ' || *p >= 0x7f || strchr("\"(),/:;<=>?@[\\]{}", *p) != NULL)
			return false;
	return strpbrk(value, "\r\n") == NULL;
}

/* A request target goes verbatim into the request line: no spaces or controls. */
static bool
htc_target_ok(const char *s)
{
	for (const unsigned char *p = (const unsigned char *)s; *p != '\0'; p++)
		if (*p <= ' ' || *p == 0x7f)
			return false;
	return true;
}

/* Copy the caller's arguments; NULL and *why when they cannot be sent. */
static struct htc_req *
htc_req_new(struct htc *c, const char *method, const char *path_and_query,
    const char *const *headers, const char *body, size_t body_len, const char **why)
{
	struct htc_req *req = xcalloc(1, sizeof(*req));
	const char *path = path_and_query != NULL ? path_and_query : "";
	size_t n = 0;

	req->c = c;
	req->method = "?";
	*why = NULL;
	for (size_t i = 0; i < NELEM(htc_methods); i++)
		if (method != NULL && strcmp(method, htc_methods[i].name) == 0) {
			req->method = htc_methods[i].name;
			req->cmd = htc_methods[i].cmd;
		}
	if (strcmp(req->method, "?") == 0)
		*why = "unsupported method";
	req->uri = xasprintf("%s%s%s", c->prefix, path[0] == '/' ? "" : "/", path);
	if (!htc_target_ok(req->uri))
		*why = "path has spaces or control characters";
	while (headers != NULL && headers[n] != NULL && headers[n + 1] != NULL)
		n += 2;
	if (headers != NULL && headers[n] != NULL)
		*why = "header without a value";
	req->headers = xcalloc(n + 1, sizeof(char *));
	for (size_t i = 0; i < n; i++)
		req->headers[i] = xstrdup(headers[i]);
	for (size_t i = 0; i < n; i += 2)
		if (!htc_header_ok(headers[i], headers[i + 1]))
			*why = "invalid header name or value";
	if (body != NULL) {
		req->body = xmalloc(body_len);
		memcpy(req->body, body, body_len);
		req->body_len = body_len;
	}
	return req;
}

/* ---- names ---- */

static void
htc_dns_free_later(evutil_socket_t fd, short what, void *arg)
{
	evdns_base_free(arg, 0);
}

/* The lookup ended (maybe inside evdns_getaddrinfo): keep its first address, or why it failed. */
static void
htc_on_resolved(int result, struct evutil_addrinfo *res, void *arg)
{
	struct htc_lookup *l = arg;
	struct htc *c = l->c;

	if (c == NULL) {
		/* Orphaned by htc_free: free the resolver once evdns is off the stack. */
		struct timeval now = { 0, 0 };

		event_base_once(l->base, -1, EV_TIMEOUT, htc_dns_free_later, l->dns, &now);
	} else {
		c->lookup = NULL;
		c->lookup_req = NULL;
		if (result == 0 && res != NULL &&
		    getnameinfo(res->ai_addr, (socklen_t)res->ai_addrlen, c->addr, sizeof(c->addr),
		    NULL, 0, NI_NUMERICHOST) == 0) {
			c->addr_expires = util_mono_us() + HTC_ADDR_TTL_US;
			log_debug("http resolve", "origin=%s addr=%s", c->origin, c->addr);
		} else {
			c->addr[0] = '\0';
			free(c->resolve_error);
			c->resolve_error = xasprintf("cannot resolve %s: %s", c->host,
			    result != 0 ? evutil_gai_strerror(result) : "no address");
			log_debug("http resolve", "origin=%s error=%s", c->origin,
			    log_quote(c->resolve_error));
		}
		htc_schedule(c);
	}
	if (res != NULL)
		evutil_freeaddrinfo(res);
	free(l);
}

/* Start looking the host up unless a lookup is under way. */
static void
htc_resolve(struct htc *c)
{
	struct evutil_addrinfo hints = {
		.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_protocol = IPPROTO_TCP,
		.ai_flags = EVUTIL_AI_ADDRCONFIG,
	};
	struct evdns_getaddrinfo_request *req;
	struct htc_lookup *l;

	if (c->lookup != NULL)
		return;
	l = xcalloc(1, sizeof(*l));
	*l = (struct htc_lookup){ .c = c, .dns = c->dns, .base = c->base };
	c->lookup = l;
	/* NULL when it already ended and called back (hosts file, errors). */
	req = evdns_getaddrinfo(c->dns, c->host, NULL, &hints, htc_on_resolved, l);
	if (c->lookup != NULL)
		c->lookup_req = req;
}

/* Whether new connections have an address to go to. */
static bool
htc_addr_ready(struct htc *c)
{
	return c->addr[0] != '\0' && (c->addr_expires == 0 || util_mono_us() < c->addr_expires);
}

/* A connect to conn's address failed: look the name up again before the next one. */
static void
htc_addr_failed(struct htc_conn *conn)
{
	struct htc *c = conn->c;

	if (c->dns != NULL && strcmp(conn->addr, c->addr) == 0)
		c->addr[0] = '\0';
}

/* ---- connections ---- */

static void
htc_conn_set_state(struct htc_conn *conn, enum htc_conn_state state, const char *why)
{
	struct htc *c = conn->c;

	if (conn->state == state)
		return;
	log_debug("http connection", "origin=%s conn=%u from=%s to=%s reason=%s", c->origin,
	    conn->id, htc_conn_state_names[conn->state], htc_conn_state_names[state],
	    log_quote(why));
	switch (conn->state) {
	case HTC_CONN_CONNECTING:
	case HTC_CONN_BUSY:
		TAILQ_REMOVE(&c->busy, conn, entry);
		c->nbusy--;
		break;
	case HTC_CONN_IDLE:
		TAILQ_REMOVE(&c->idle, conn, entry);
		c->nidle--;
		break;
	case HTC_CONN_DEAD:
		TAILQ_REMOVE(&c->dead, conn, entry);
		break;
	}
	conn->state = state;
	switch (state) {
	case HTC_CONN_CONNECTING:
	case HTC_CONN_BUSY:
		TAILQ_INSERT_TAIL(&c->busy, conn, entry);
		c->nbusy++;
		break;
	case HTC_CONN_IDLE:
		/* Most recently used first, so surplus connections age out at the tail. */
		TAILQ_INSERT_HEAD(&c->idle, conn, entry);
		c->nidle++;
		conn->idle_since = util_mono_us();
		break;
	case HTC_CONN_DEAD:
		TAILQ_INSERT_TAIL(&c->dead, conn, entry);
		break;
	}
	htc_publish(c);
}

/*
 * Whether TCP (and TLS) is up.  libevent does not say when it connects,
 * so ask the SSL object, or the socket for plain TCP.
 */
static bool
htc_conn_is_up(struct htc_conn *conn)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);
	evutil_socket_t fd;

	if (conn->up)
		return true;
	if (conn->ssl != NULL)
		conn->up = SSL_is_init_finished(conn->ssl);
	else if ((fd = bufferevent_getfd(conn->bev)) >= 0)
		conn->up = getpeername(fd, (struct sockaddr *)&ss, &len) == 0;
	return conn->up;
}

/* Stop using conn; htc_on_later frees it once libevent is off the stack. */
static void
htc_conn_kill(struct htc_conn *conn, const char *why)
{
	if (conn->state == HTC_CONN_DEAD)
		return;
	conn->req = NULL;
	evtimer_del(conn->connect_timer);
	htc_conn_set_state(conn, HTC_CONN_DEAD, why);
	htc_schedule(conn->c);
}

static void
htc_conn_free(struct htc_conn *conn)
{
	struct htc *c = conn->c;

	TAILQ_REMOVE(&c->dead, conn, entry);
	/* Frees a request still queued on it without calling back, then the bufferevent, SSL and socket. */
	evhttp_connection_free(conn->evcon);
	event_free(conn->connect_timer);
	free(conn);
}

/* Why a connection that never came up failed, for error_text. */
static void
htc_conn_connect_error(struct htc_conn *conn, char *buf, size_t size)
{
	struct htc *c = conn->c;
	unsigned long e;

	if (conn->ssl != NULL) {
		long v = SSL_get_verify_result(conn->ssl);

		if (v != X509_V_OK) {
			snprintf(buf, size, "TLS certificate verification failed for %s: %s",
			    c->origin, X509_verify_cert_error_string(v));
			return;
		}
		/* libevent also records bare SSL_get_error codes (library 0): no news. */
		while ((e = bufferevent_get_openssl_error(conn->bev)) != 0)
			if (ERR_GET_LIB(e) != 0) {
				char err[256];

				ERR_error_string_n(e, err, sizeof(err));
				snprintf(buf, size, "TLS handshake with %s failed: %s", c->origin, err);
				return;
			}
	}
	/*
	 * libevent has closed the socket and clobbered errno by now, so the
	 * exact cause (refused, unreachable, reset) is lost.
	 */
	snprintf(buf, size, "connect to %s failed (refused, unreachable or closed during the %s)",
	    c->origin, conn->ssl != NULL ? "TCP or TLS handshake" : "TCP handshake");
}

/* Why a request failed on a connection that was up, from libevent's error code. */
static enum htc_error
htc_conn_io_error(struct htc_conn *conn, char *buf, size_t size)
{
	const char *origin = conn->c->origin;

	if (!conn->has_error) {
		snprintf(buf, size, "connection to %s failed", origin);
		return HTC_EPROTO;
	}
	switch (conn->last_error) {
	case EVREQ_HTTP_TIMEOUT:
		snprintf(buf, size, "read timeout: %s sent nothing for too long", origin);
		return HTC_ETIMEOUT;
	case EVREQ_HTTP_EOF:
		snprintf(buf, size, "%s closed the connection before a complete answer%s", origin,
		    conn->served > 0 ? " (reused connection)" : "");
		break;
	case EVREQ_HTTP_INVALID_HEADER:
		snprintf(buf, size, "malformed HTTP answer from %s", origin);
		break;
	case EVREQ_HTTP_DATA_TOO_LONG:
		snprintf(buf, size, "answer from %s too large (body over %d or headers over %d bytes)",
		    origin, HTC_MAX_BODY, HTC_MAX_HEADERS);
		break;
	default:
		snprintf(buf, size, "I/O error on the connection to %s", origin);
	}
	return HTC_EPROTO;
}

/* The request on conn failed: drop the connection and answer in the terms of enum htc_error. */
static void
htc_conn_failed(struct htc_conn *conn, struct htc_req *req)
{
	enum htc_error error = HTC_ECONNECT;
	char text[400];

	if (htc_conn_is_up(conn)) {
		error = htc_conn_io_error(conn, text, sizeof(text));
	} else {
		htc_conn_connect_error(conn, text, sizeof(text));
		htc_addr_failed(conn);
	}
	htc_conn_kill(conn, text);
	htc_req_fail(req, error, "%s", text);
}

/* A complete answer: keep the connection unless it is closing, then call back. */
static void
htc_conn_answered(struct htc_conn *conn, struct htc_req *req, struct evhttp_request *ereq)
{
	struct evbuffer *in = evhttp_request_get_input_buffer(ereq);
	struct htc_response r = { .error = HTC_OK, .error_text = "" };

	conn->up = true;
	conn->served++;
	evtimer_del(conn->connect_timer);
	if (conn->closed || conn->c->closed) {
		htc_conn_kill(conn, "closed after the answer");
	} else {
		/*
		 * libevent's read timeout would also close the idle connection;
		 * our deadline timers cover requests, so idle ones need none.
		 */
		bufferevent_set_timeouts(conn->bev, NULL, NULL);
		htc_conn_set_state(conn, HTC_CONN_IDLE, "answered");
	}
	htc_schedule(conn->c);
	r.status = evhttp_request_get_response_code(ereq);
	r.body_len = evbuffer_get_length(in);
	/* libevent frees this buffer after the callback, so NUL-terminate it in place. */
	if (evbuffer_add(in, "", 1) == 0)
		r.body = (const char *)evbuffer_pullup(in, -1);
	if (r.body == NULL) {
		r.body = "";
		r.body_len = 0;
	}
	r.retry_after = evhttp_find_header(evhttp_request_get_input_headers(ereq), "Retry-After");
	htc_req_finish(req, &r);
}

/*
 * libevent's request callback.  ereq is NULL after an error (the error
 * callback ran first), or has response code 0 when the connect failed.
 */
static void
htc_conn_on_done(struct evhttp_request *ereq, void *arg)
{
	struct htc_conn *conn = arg;
	struct htc_req *req = conn->req;

	if (req == NULL)
		return;		/* given up (deadline or htc_close); that already answered */
	conn->req = NULL;
	req->conn = NULL;
	if (ereq != NULL && evhttp_request_get_response_code(ereq) > 0)
		htc_conn_answered(conn, req, ereq);
	else
		htc_conn_failed(conn, req);
}

/* libevent's error callback; the request callback follows with NULL. */
static void
htc_conn_on_error(enum evhttp_request_error error, void *arg)
{
	struct htc_conn *conn = arg;

	conn->last_error = error;
	conn->has_error = true;
}

/*
 * libevent closes a connection that was up: the server closed an idle one,
 * the answer said "Connection: close", or a request on it is failing (its
 * callbacks follow and decide).
 */
static void
htc_conn_on_close(struct evhttp_connection *evcon, void *arg)
{
	struct htc_conn *conn = arg;

	conn->up = true;
	conn->closed = true;
	if (conn->req == NULL)
		htc_conn_kill(conn, "closed while idle");
}

/* connect_timeout_ms after the start: give up unless TCP and TLS are up. */
static void
htc_conn_on_connect_timer(evutil_socket_t fd, short what, void *arg)
{
	struct htc_conn *conn = arg;
	struct htc *c = conn->c;
	struct htc_req *req = conn->req;

	if (htc_conn_is_up(conn)) {
		if (conn->state == HTC_CONN_CONNECTING)
			htc_conn_set_state(conn, HTC_CONN_BUSY, "connected");
		return;
	}
	htc_conn_kill(conn, "connect timeout");
	htc_addr_failed(conn);
	if (req != NULL) {
		req->conn = NULL;
		htc_req_fail(req, HTC_ETIMEOUT, "connect timeout: no %s connection to %s within %lld ms",
		    conn->ssl != NULL ? "TLS" : "TCP", c->origin, (long long)c->connect_timeout_ms);
	}
}

/* A fresh SSL object: SNI and the name check for names, the address check for IP literals. */
static SSL *
htc_ssl_new(struct htc *c)
{
	SSL *ssl = SSL_new(c->ssl_ctx);

	if (ssl == NULL)
		return NULL;
	if (c->host_is_ip) {
		if (X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), c->host) != 1)
			goto fail;
	} else {
		SSL_set_hostflags(ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
		if (SSL_set_tlsext_host_name(ssl, c->host) != 1 || SSL_set1_host(ssl, c->host) != 1)
			goto fail;
	}
	return ssl;
fail:
	SSL_free(ssl);
	return NULL;
}

/* Open a connection (it connects when the first request is made on it); NULL when out of resources. */
static struct htc_conn *
htc_conn_open(struct htc *c)
{
	struct htc_conn *conn;
	struct bufferevent *bev;
	struct evhttp_connection *evcon;
	SSL *ssl = NULL;
	int opts = BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS;
	int64_t backstop = (c->timeout_ms > c->connect_timeout_ms ? c->timeout_ms :
	    c->connect_timeout_ms) + 1000;
	struct timeval tv = { .tv_sec = backstop / 1000, .tv_usec = (backstop % 1000) * 1000 };

	if (c->ssl_ctx != NULL) {
		if ((ssl = htc_ssl_new(c)) == NULL)
			return NULL;
		/* With CLOSE_ON_FREE the bufferevent frees the SSL object. */
		bev = bufferevent_openssl_socket_new(c->base, -1, ssl, BUFFEREVENT_SSL_CONNECTING, opts);
		if (bev == NULL) {
			SSL_free(ssl);
			return NULL;
		}
		/* Servers often close without close_notify; that is an end of stream, not an error. */
		bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
	} else if ((bev = bufferevent_socket_new(c->base, -1, opts)) == NULL)
		return NULL;
	/* A numeric address: libevent resolves it at once, without the resolver. */
	evcon = evhttp_connection_base_bufferevent_new(c->base, NULL, bev, c->addr,
	    (unsigned short)c->port);
	if (evcon == NULL) {
		bufferevent_free(bev);
		return NULL;
	}
	conn = xcalloc(1, sizeof(*conn));
	conn->c = c;
	conn->id = ++c->next_id;
	conn->evcon = evcon;
	conn->bev = bev;
	conn->ssl = ssl;
	snprintf(conn->addr, sizeof(conn->addr), "%s", c->addr);
	/* A connection lives once: libevent must not reconnect it behind our back. */
	evhttp_connection_set_retries(evcon, 0);
	/* Our own timers come first; this only bounds what they might miss. */
	evhttp_connection_set_timeout_tv(evcon, &tv);
	evhttp_connection_set_max_body_size(evcon, HTC_MAX_BODY);
	evhttp_connection_set_max_headers_size(evcon, HTC_MAX_HEADERS);
	evhttp_connection_set_closecb(evcon, htc_conn_on_close, conn);
	conn->connect_timer = evtimer_new(c->base, htc_conn_on_connect_timer, conn);
	htc_timer_add(conn->connect_timer, c->connect_timeout_ms);
	conn->state = HTC_CONN_CONNECTING;
	TAILQ_INSERT_TAIL(&c->busy, conn, entry);
	c->nbusy++;
	htc_count(&c->stats.connects);
	htc_publish(c);
	log_debug("http connection", "origin=%s conn=%u to=connecting addr=%s", c->origin, conn->id,
	    conn->addr);
	return conn;
}

static void
htc_add_header(struct evkeyvalq *h, const char *name, const char *value)
{
	if (evhttp_find_header(h, name) == NULL)
		evhttp_add_header(h, name, value);
}

/* Put req on conn.  On failure the request is answered and conn killed. */
static void
htc_conn_send(struct htc_conn *conn, struct htc_req *req)
{
	struct htc *c = conn->c;
	struct evhttp_request *ereq = evhttp_request_new(htc_conn_on_done, conn);
	struct evkeyvalq *h;
	char len[24];

	if (ereq == NULL) {
		htc_conn_kill(conn, "out of memory");
		htc_req_fail(req, HTC_ECONNECT, "cannot create a request (out of memory)");
		return;
	}
	evhttp_request_set_error_cb(ereq, htc_conn_on_error);
	h = evhttp_request_get_output_headers(ereq);
	for (char **p = req->headers; *p != NULL; p += 2)
		evhttp_add_header(h, p[0], p[1]);
	htc_add_header(h, "Host", c->origin);
	htc_add_header(h, "User-Agent", PACKAGE_NAME "/" PACKAGE_VERSION);
	if (req->body != NULL) {
		htc_add_header(h, "Content-Type", "application/json");
		evbuffer_add(evhttp_request_get_output_buffer(ereq), req->body, req->body_len);
	}
	/* libevent leaves Content-Length out of an empty body, which some servers refuse on POST. */
	if (req->body != NULL || req->cmd == EVHTTP_REQ_POST || req->cmd == EVHTTP_REQ_PUT ||
	    req->cmd == EVHTTP_REQ_PATCH) {
		snprintf(len, sizeof(len), "%zu", req->body_len);
		htc_add_header(h, "Content-Length", len);
	}
	conn->req = req;
	conn->has_error = false;
	req->conn = conn;
	if (conn->state == HTC_CONN_IDLE)
		htc_conn_set_state(conn, HTC_CONN_BUSY, "request");
	/*
	 * A failed connect can call htc_conn_on_done from inside this call,
	 * which answers req; that is fine here (we run from htc_on_later).
	 */
	if (evhttp_make_request(conn->evcon, ereq, req->cmd, req->uri) != 0) {
		/* libevent took the request off the connection but did not free it. */
		evhttp_request_free(ereq);
		if (conn->req == req) {
			conn->req = NULL;
			req->conn = NULL;
			htc_conn_kill(conn, "cannot start the request");
			htc_req_fail(req, HTC_ECONNECT, "cannot start a request to %s", c->origin);
		}
	}
}

/* ---- the client ---- */

/* How many queued requests will not wait: idle connections plus room for new ones. */
static int
htc_capacity(const struct htc *c)
{
	return c->max_conns - c->nbusy;
}

enum htc_get {
	HTC_GET_CONN,	/* a connection to send on */
	HTC_GET_WAIT,	/* none free: wait for one, or for the name lookup */
	HTC_GET_FAIL,	/* no new connection possible; *why says why */
};

/* An idle connection, or a new one while under the limit. */
static enum htc_get
htc_conn_get(struct htc *c, struct htc_conn **connp, const char **why)
{
	struct htc_conn *conn;
	int64_t now = util_mono_us();

	while ((conn = TAILQ_LAST(&c->idle, htc_conn_list)) != NULL &&
	    now - conn->idle_since > HTC_IDLE_MAX_US)
		htc_conn_kill(conn, "idle too long");
	if ((*connp = TAILQ_FIRST(&c->idle)) != NULL)
		return HTC_GET_CONN;
	if (c->nbusy + c->nidle >= c->max_conns)
		return HTC_GET_WAIT;
	if (!htc_addr_ready(c) && c->resolve_error == NULL)
		htc_resolve(c);		/* may end at once: hosts file, errors */
	if (!htc_addr_ready(c)) {
		if (c->resolve_error == NULL)
			return HTC_GET_WAIT;
		*why = c->resolve_error;
		return HTC_GET_FAIL;
	}
	if ((*connp = htc_conn_open(c)) == NULL) {
		*why = "cannot create a connection (out of resources)";
		return HTC_GET_FAIL;
	}
	return HTC_GET_CONN;
}

/*
 * Give waiting requests to connections, oldest first.  Requests that
 * cannot get one are answered on the next turn, so a caller that sends
 * again from its callback cannot spin here.
 */
static void
htc_pump(struct htc *c)
{
	struct htc_req *req;
	struct htc_conn *conn;
	const char *why;
	enum htc_get got;

	while (!c->closed && (req = TAILQ_FIRST(&c->queue)) != NULL) {
		if ((got = htc_conn_get(c, &conn, &why)) == HTC_GET_WAIT)
			break;
		TAILQ_REMOVE(&c->queue, req, entry);
		c->nqueue--;
		htc_publish(c);
		if (got == HTC_GET_FAIL)
			htc_req_fail_later(req, HTC_ECONNECT, "%s", why);
		else
			htc_conn_send(conn, req);
	}
	/* A failed lookup answers the requests waiting for it once; the next ones look up again. */
	free(c->resolve_error);
	c->resolve_error = NULL;
}

static void
htc_on_later(evutil_socket_t fd, short what, void *arg)
{
	struct htc *c = arg;
	struct htc_conn *conn;

	while ((conn = TAILQ_FIRST(&c->dead)) != NULL)
		htc_conn_free(conn);
	htc_pump(c);
	htc_deliver_done(c);
}

static void
htc_schedule(struct htc *c)
{
	event_active(c->later, EV_TIMEOUT, 0);
}

/* The whole-request deadline: answer HTC_ETIMEOUT, dropping the connection if the request is on one. */
static void
htc_req_on_deadline(evutil_socket_t fd, short what, void *arg)
{
	struct htc_req *req = arg;
	struct htc *c = req->c;
	struct htc_conn *conn = req->conn;
	bool up;

	if (conn == NULL) {
		TAILQ_REMOVE(&c->queue, req, entry);
		c->nqueue--;
		htc_publish(c);
		if (c->lookup != NULL)
			htc_req_fail(req, HTC_ETIMEOUT, "connect timeout: %s not resolved within %lld ms",
			    c->host, (long long)c->timeout_ms);
		else
			htc_req_fail(req, HTC_ETIMEOUT, "timeout: no free connection to %s within %lld ms",
			    c->origin, (long long)c->timeout_ms);
		return;
	}
	up = htc_conn_is_up(conn);
	req->conn = NULL;
	htc_conn_kill(conn, up ? "read timeout" : "connect timeout");
	if (!up)
		htc_addr_failed(conn);
	if (up)
		htc_req_fail(req, HTC_ETIMEOUT, "read timeout: no complete answer from %s within %lld ms",
		    c->origin, (long long)c->timeout_ms);
	else
		htc_req_fail(req, HTC_ETIMEOUT, "connect timeout: no %s connection to %s within %lld ms",
		    conn->ssl != NULL ? "TLS" : "TCP", c->origin, (long long)c->timeout_ms);
}

bool
htc_request(struct htc *c, const char *method, const char *path_and_query,
    const char *const *headers, const char *body, size_t body_len, htc_cb *cb, void *arg)
{
	struct htc_req *req;
	const char *why;

	if (c->freeing || (!c->closed && c->nqueue >= htc_capacity(c) + c->max_queue))
		return false;
	req = htc_req_new(c, method, path_and_query, headers, body, body_len, &why);
	req->cb = cb;
	req->arg = arg;
	req->deadline = evtimer_new(c->base, htc_req_on_deadline, req);
	if (c->closed) {
		htc_req_fail_later(req, HTC_ECLOSED, "client for %s is closed", c->origin);
	} else if (why != NULL) {
		htc_req_fail_later(req, HTC_EPROTO, "cannot send %s %s: %s", req->method,
		    req->uri, why);
	} else {
		htc_timer_add(req->deadline, c->timeout_ms);
		TAILQ_INSERT_TAIL(&c->queue, req, entry);
		c->nqueue++;
		htc_publish(c);
		htc_schedule(c);
	}
	return true;
}

void
htc_close(struct htc *c)
{
	struct htc_req_list doomed = TAILQ_HEAD_INITIALIZER(doomed);
	struct htc_conn *conn;
	struct htc_req *req;

	c->closed = true;
	/*
	 * Collect first, oldest first (in flight, then queued), then call
	 * back: a callback may call htc_request or htc_close again.
	 */
	while ((conn = TAILQ_FIRST(&c->busy)) != NULL) {
		if ((req = conn->req) != NULL) {
			req->conn = NULL;
			TAILQ_INSERT_TAIL(&doomed, req, entry);
		}
		htc_conn_kill(conn, "client closed");
	}
	TAILQ_CONCAT(&doomed, &c->queue, entry);
	c->nqueue = 0;
	while ((conn = TAILQ_FIRST(&c->idle)) != NULL)
		htc_conn_kill(conn, "client closed");
	htc_publish(c);
	while ((req = TAILQ_FIRST(&doomed)) != NULL) {
		TAILQ_REMOVE(&doomed, req, entry);
		htc_req_fail(req, HTC_ECLOSED, "client for %s closed before an answer", c->origin);
	}
	htc_deliver_done(c);
}

void
htc_free(struct htc *c)
{
	struct htc_conn *conn;

	if (c == NULL)
		return;
	htc_close(c);
	c->freeing = true;
	while (!TAILQ_EMPTY(&c->done))
		htc_deliver_done(c);
	while ((conn = TAILQ_FIRST(&c->dead)) != NULL)
		htc_conn_free(conn);
	event_free(c->later);
	if (c->lookup != NULL) {
		/* Its callback comes on a later turn and frees the resolver then. */
		c->lookup->c = NULL;
		evdns_getaddrinfo_cancel(c->lookup_req);
	} else if (c->dns != NULL) {
		evdns_base_free(c->dns, 0);
	}
	free(c->resolve_error);
	SSL_CTX_free(c->ssl_ctx);
	free(c->host);
	free(c->origin);
	free(c->prefix);
	free(c);
}

const struct htc_stats *
htc_stats(const struct htc *c)
{
	return &c->stats;
}

const char *
htc_origin(const struct htc *c)
{
	return c->origin;
}

/* The last OpenSSL error as text, for causes. */
static const char *
htc_ssl_error(char *buf, size_t size)
{
	unsigned long e = ERR_get_error();

	if (e == 0)
		snprintf(buf, size, "unknown OpenSSL error");
	else
		ERR_error_string_n(e, buf, size);
	ERR_clear_error();
	return buf;
}

static bool
htc_tls_setup(struct htc *c, const char *ca_file, char **cause)
{
	static const unsigned char alpn[] = "\x08http/1.1";
	char err[256];

	if ((c->ssl_ctx = SSL_CTX_new(TLS_client_method())) == NULL) {
		*cause = xasprintf("cannot create a TLS context: %s", htc_ssl_error(err, sizeof(err)));
		return false;
	}
	SSL_CTX_set_min_proto_version(c->ssl_ctx, TLS1_2_VERSION);
	SSL_CTX_set_verify(c->ssl_ctx, SSL_VERIFY_PEER, NULL);
	/* Idle keep-alive connections then hold no read/write buffers. */
	SSL_CTX_set_mode(c->ssl_ctx, SSL_MODE_RELEASE_BUFFERS);
	SSL_CTX_set_alpn_protos(c->ssl_ctx, alpn, sizeof(alpn) - 1);
	if (ca_file != NULL && ca_file[0] != '\0') {
		if (SSL_CTX_load_verify_locations(c->ssl_ctx, ca_file, NULL) != 1) {
			*cause = xasprintf("cannot load CA file %s: %s", ca_file,
			    htc_ssl_error(err, sizeof(err)));
			return false;
		}
	} else if (SSL_CTX_set_default_verify_paths(c->ssl_ctx) != 1) {
		*cause = xasprintf("cannot load the system CA certificates: %s",
		    htc_ssl_error(err, sizeof(err)));
		return false;
	}
	return true;
}

/* Split base_url into scheme, host, port and prefix. */
static bool
htc_parse_url(struct htc *c, const char *url, bool *tls, char **cause)
{
	struct evhttp_uri *u = evhttp_uri_parse(url != NULL ? url : "");
	const char *scheme, *host, *path;
	size_t hlen, plen;
	int port;

	if (u == NULL || (scheme = evhttp_uri_get_scheme(u)) == NULL ||
	    (host = evhttp_uri_get_host(u)) == NULL || host[0] == '\0') {
		*cause = xasprintf("base URL %s is not an absolute URL", url != NULL ? url : "(null)");
		goto fail;
	}
	if (strcasecmp(scheme, "https") != 0 && strcasecmp(scheme, "http") != 0) {
		*cause = xasprintf("base URL %s: scheme must be https or http", url);
		goto fail;
	}
	if (evhttp_uri_get_query(u) != NULL || evhttp_uri_get_fragment(u) != NULL ||
	    evhttp_uri_get_userinfo(u) != NULL) {
		*cause = xasprintf("base URL %s: no user, query or fragment allowed", url);
		goto fail;
	}
	*tls = strcasecmp(scheme, "https") == 0;
	hlen = strlen(host);
	/* libevent keeps the brackets of an IPv6 literal. */
	if (host[0] == '[' && hlen > 2 && host[hlen - 1] == ']')
		c->host = xstrndup(host + 1, hlen - 2);
	else
		c->host = xstrdup(host);
	c->host_is_ip = util_is_ip_literal(c->host);
	if (c->host_is_ip)
		snprintf(c->addr, sizeof(c->addr), "%s", c->host);
	port = evhttp_uri_get_port(u);
	c->port = port > 0 ? port : *tls ? 443 : 80;
	if (port > 0)
		c->origin = xasprintf("%s%s%s:%d", strchr(c->host, ':') ? "[" : "", c->host,
		    strchr(c->host, ':') ? "]" : "", port);
	else
		c->origin = xasprintf("%s%s%s", strchr(c->host, ':') ? "[" : "", c->host,
		    strchr(c->host, ':') ? "]" : "");
	path = evhttp_uri_get_path(u);
	plen = path != NULL ? strlen(path) : 0;
	while (plen > 0 && path[plen - 1] == '/')
		plen--;
	c->prefix = xstrndup(path != NULL ? path : "", plen);
	evhttp_uri_free(u);
	return true;
fail:
	if (u != NULL)
		evhttp_uri_free(u);
	return false;
}

static bool
htc_check_config(const struct htc_config *cfg, char **cause)
{
	if (cfg->connections < 1 || cfg->connections > HTC_MAX_CONNECTIONS)
		*cause = xasprintf("connections must be 1..%d, not %d", HTC_MAX_CONNECTIONS,
		    cfg->connections);
	else if (cfg->max_queue < 0)
		*cause = xasprintf("max_queue must not be negative (%d)", cfg->max_queue);
	else if (cfg->connect_timeout_ms <= 0 || cfg->timeout_ms <= 0)
		*cause = xasprintf("timeouts must be positive (connect %lld ms, request %lld ms)",
		    (long long)cfg->connect_timeout_ms, (long long)cfg->timeout_ms);
	else
		return true;
	return false;
}

struct htc *
htc_new(struct event_base *base, const struct htc_config *cfg, char **cause)
{
	struct htc *c;
	bool tls = false;

	*cause = NULL;
	if (!htc_check_config(cfg, cause))
		return NULL;
	c = xcalloc(1, sizeof(*c));
	c->base = base;
	c->max_conns = cfg->connections;
	c->max_queue = cfg->max_queue;
	c->connect_timeout_ms = cfg->connect_timeout_ms;
	c->timeout_ms = cfg->timeout_ms;
	TAILQ_INIT(&c->busy);
	TAILQ_INIT(&c->idle);
	TAILQ_INIT(&c->dead);
	TAILQ_INIT(&c->queue);
	TAILQ_INIT(&c->done);
	if (!htc_parse_url(c, cfg->base_url, &tls, cause) ||
	    (tls && !htc_tls_setup(c, cfg->ca_file, cause)))
		goto fail;
	if (!c->host_is_ip) {
		/* No idle DNS socket may keep the loop alive. */
		c->dns = evdns_base_new(base, EVDNS_BASE_INITIALIZE_NAMESERVERS |
		    EVDNS_BASE_DISABLE_WHEN_INACTIVE);
		if (c->dns == NULL) {
			*cause = xstrdup("cannot set up the DNS resolver (see /etc/resolv.conf)");
			goto fail;
		}
	}
	c->later = event_new(base, -1, 0, htc_on_later, c);
	return c;
fail:
	SSL_CTX_free(c->ssl_ctx);
	free(c->host);
	free(c->origin);
	free(c->prefix);
	free(c);
	return NULL;
}
