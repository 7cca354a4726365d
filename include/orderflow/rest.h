/*
 * rest: what every dashboard endpoint shares.
 *
 * A handler fills a struct rest_call (embedded first in its own request
 * struct) and calls rest_begin: the caller is authenticated (auth), takes
 * a token from its rate-limit bucket (ratelimit), then the handler's run
 * function gets the call with c->creator set; every query is scoped by it,
 * so another creator's order is simply not found.
 *
 * Answers: rest_reply / rest_error / rest_unavailable answer the request
 * and free the call, from whichever worker they are called on: on a worker
 * other than the request's (see rest_on_owner) the answer is handed back
 * to the request's worker, which sends it.  rest_on_owner runs a step on
 * the worker that owns an order (ostore), so every change of an order is
 * made there.
 *
 * Also the parsing every endpoint needs: JSON bodies, If-Match, UUIDs,
 * numbers, enum lists, ISO 8601 times, bounded UTF-8 text.
 *
 * Called by the REST handler modules (rest_*.c) on the request's worker.
 */
#ifndef ORDERFLOW_REST_H
#define ORDERFLOW_REST_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "orderflow/jwt.h"
#include "orderflow/util.h"

struct httpd_req;
struct pg_batch;
struct worker;

struct rest_call;
typedef void rest_fn(struct rest_call *c);

/* Bytes of a reason: 255 characters of UTF-8 and the NUL. */
#define REST_REASON_SIZE (255 * 4 + 1)

/* One dashboard request; embed it first in the handler's own struct. */
struct rest_call {
	struct httpd_req *hr;		/* the request; touched only on home */
	struct worker	*home;		/* the worker the request came in on */
	rest_fn		*run;		/* what to do once authenticated */
	rest_fn		*free;		/* frees the whole struct; NULL: free(c) */
	char		creator[JWT_UUID_LEN + 1];	/* who asked */
	char		*path_id;	/* a copy of the path's {id}, readable anywhere */
	/* An answer made on another worker, sent by home. */
	int		status;
	char		*body;
	char		*retry_after;
	char		*allow;
};

/* Authenticate, rate-limit, then c->run(c) on this worker. */
void rest_begin(struct httpd_req *hr, struct rest_call *c, rest_fn *run);
/* Free the call (the request must have been answered, or be abandoned). */
void rest_free(struct rest_call *c);
/* Submit b on this worker's pool; when refused, answer 503 and free c. */
void rest_submit(struct rest_call *c, struct pg_batch *b);

/* Answer with a JSON body and free c (any worker). */
void rest_reply(struct rest_call *c, int status, const char *body, size_t len);
/* Answer {"error":{"code":...,"message":...}} and free c (any worker). */
void rest_error(struct rest_call *c, int status, const char *code, const char *fmt, ...)
	PRINTFLIKE(4, 5);
/* 503 with Retry-After: 1, and free c (any worker). */
void rest_unavailable(struct rest_call *c, const char *why);
/*
 * A statement failed: 503 (with why) only when trying again may help (no
 * answer, SQLSTATE classes 08, 40, 53, 55, 57, 58); a constraint (23) is
 * 409, a value (22) 400, anything else 500.  Frees c (any worker).
 */
void rest_db_error(struct rest_call *c, const char *sqlstate, const char *why);
/* rest_db_error with the batch's SQLSTATE (b may be NULL: no answer). */
void rest_db_failed(struct rest_call *c, const struct pg_batch *b, const char *why);

/*
 * Run fn(c) on the worker that owns the order with this TikTok id (at once
 * when that is this one).  fn answers through rest_reply & co.
 */
void rest_on_owner(struct rest_call *c, const char *tiktok_id, rest_fn *fn);

/* The request's JSON object body; NULL when it was answered 415 or 400 (c freed). */
json_t *rest_body(struct rest_call *c);
/* If-Match: 7, "7" or W/"7"; 0 when absent, -1 when malformed. */
long long rest_if_match(struct rest_call *c);
/* What rest_if_match_new returns for If-Match: 0 (the thing must not exist yet). */
#define REST_IF_NONE (-2)
/* rest_if_match for a PUT that may create what it names: "0" is REST_IF_NONE. */
long long rest_if_match_new(struct rest_call *c);
/* "the body has a field this endpoint does not know: "key"" (valid until the next call on this thread). */
const char *rest_unknown_field(const char *key);
/* Fail with 400 when the request has a query string (endpoints that take none). */
bool rest_no_query(struct httpd_req *hr);
/*
 * One query parameter: NULL when taken, else what is wrong with it (the
 * end of "parameter \"key\" <it>").
 */
typedef const char *rest_param_fn(void *arg, const char *key, const char *value);
/*
 * The request's query parameters (at most 4 KiB of them), each through fn
 * in order; false when the request was answered 400 (invalid_query, or
 * invalid_parameter for the first one fn refused).
 */
bool rest_query(struct httpd_req *hr, rest_param_fn *fn, void *arg);

/* True when s is a UUID in text. */
bool rest_uuid(const char *s);
/* The index of v in names (NULL-terminated), or -1. */
int rest_index(const char *const *names, const char *v);
/* A whole number in 1..max, or -1. */
long long rest_number(const char *s, long long max);
/* Add the comma-separated values of v, each one of names, to *mask. */
bool rest_enum_list(const char *v, const char *const *names, unsigned *mask);
/* "{a,b}": the array literal of the names in mask; "" when none. */
void rest_enum_literal(unsigned mask, const char *const *names, char *out, size_t size);
/* Well-formed UTF-8 without control characters. */
bool rest_text_ok(const char *s, size_t n);
/* Characters (code points) of well-formed UTF-8. */
size_t rest_chars(const char *s);
/*
 * ISO 8601: YYYY-MM-DD, or YYYY-MM-DDTHH:MM[:SS[.ffffff]] followed by Z or
 * +HH:MM / -HH:MM; *us is microseconds since the epoch, *date_only whether
 * a whole day was named.
 */
bool rest_iso8601(const char *s, long long *us, bool *date_only);
/* A "reason": null, or text of at most 255 characters, copied into out. */
bool rest_reason(json_t *v, char out[REST_REASON_SIZE], bool *has);
/* keys[from..to) as a PostgreSQL text[] literal, each element quoted (caller frees). */
char *rest_text_array(char *const *keys, int from, int to);
/* The {id} of an /api/orders/{id} path: a UUID (lower-cased) or a TikTok id; false when answered 400. */
bool rest_order_id(struct httpd_req *hr, bool *by_uuid);

#endif
