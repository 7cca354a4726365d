/*
 * httpd: a worker's evhttp server, its route table, and replies.
 *
 * Every request gets a struct httpd_req that lives until it is answered
 * with httpd_reply* (exactly once, possibly from a later callback); the
 * answer is counted in the worker's metrics and logged at debug level.
 * Errors are always {"error":{"code":...,"message":...}} with the right
 * status, including the ones libevent produces itself (see
 * evhttp_send_error in httpd.c).  Called by worker (lifecycle) and by
 * every handler module (replies).
 */
#ifndef ORDERFLOW_HTTPD_H
#define ORDERFLOW_HTTPD_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "orderflow/util.h"

struct config;
struct evhttp_request;
struct httpd;
struct worker;

#define HTTPD_MAX_PARAMS 4

/* One request being answered. */
struct httpd_req {
	struct evhttp_request *req;
	struct worker	*w;
	int		route;		/* index in the route table, -1 unmatched */
	int64_t		start_us;
	char		*path;		/* the request path, as sent */
	char		*params[HTTPD_MAX_PARAMS]; /* {name} segments of the route, in order */
};

typedef void httpd_handler(struct httpd_req *hr);

struct httpd *httpd_new(struct worker *w, int listen_fd);
void httpd_reconfigure(struct httpd *h, const struct config *cfg);
/* Close the listener: no new connections. */
void httpd_stop_accepting(struct httpd *h);
/* Requests not answered yet. */
int httpd_inflight(const struct httpd *h);
/* Answers given but not yet completely written to their clients. */
int httpd_sending(const struct httpd *h);
void httpd_free(struct httpd *h);

/* Route table access, for /metrics labels. */
int httpd_route_count(void);
const char *httpd_route_pattern(int idx);

void httpd_reply(struct httpd_req *hr, int status, const char *content_type,
    const char *body, size_t len);
/*
 * Start a streamed answer (200, body in chunks, for Server-Sent Events):
 * the request counts as answered now (metrics, drains) and hr is freed.
 * The evhttp_request is the caller's until httpd_stream_end; when its
 * client goes away, libevent detaches it from the connection (the
 * connection's close callback runs) and httpd_stream_end only frees it.
 */
struct evhttp_request *httpd_stream_start(struct httpd_req *hr, const char *content_type);
/* End a stream: the final chunk is a write a drain waits for. */
void httpd_stream_end(struct worker *w, struct evhttp_request *req);
/* Serialize doc compactly and answer; takes the reference. */
void httpd_reply_json(struct httpd_req *hr, int status, json_t *doc);
void httpd_error(struct httpd_req *hr, int status, const char *code, const char *fmt, ...)
	PRINTFLIKE(4, 5);
/* Content-Type is application/json (parameters allowed). */
bool httpd_is_json(struct httpd_req *hr);
/* {"error":{"code":...,"message":...}} (caller frees). */
char *httpd_error_json(const char *code, const char *message);
/*
 * Free a request that will never be answered because its worker has
 * ended (only after the threads were joined: libevent freed its side).
 */
void httpd_abandon(struct httpd_req *hr);
/* 503 with Retry-After, for a database that is down or a full queue. */
void httpd_unavailable(struct httpd_req *hr, int retry_after_s, const char *why);

#endif
