/*
 * auth: who is calling the dashboard REST API.
 *
 * Owns the API key format, ofk_<id>_<secret> (id: 16 hex digits; secret:
 * base64url of 32 random bytes), stored in the table api_keys as the
 * SHA-256 of the whole key, and one authenticator per worker that turns a
 * request's Authorization header into a creator id:
 *
 *   Bearer <jwt>   checked at once by jwt_verify with the worker's config;
 *   ApiKey <key>   checked against a bounded cache of what the database said
 *                  about the key's id (auth.api_key_ttl), else by one
 *                  asynchronous query through the worker's pg pool.
 *
 * When authentication fails the authenticator answers the request itself:
 * 401 {"error":{"code":"unauthorized",...}} with WWW-Authenticate, or 503
 * with Retry-After when the database cannot be asked.  A revoked key keeps
 * working on a worker for at most auth.api_key_ttl.
 *
 * Called by worker (auth_prepare, auth_new, auth_free), by the REST
 * handlers (auth_request), and by main's API key commands (auth_key_*).
 */
#ifndef ORDERFLOW_AUTH_H
#define ORDERFLOW_AUTH_H

#include <stdbool.h>
#include <stddef.h>

#include "orderflow/jwt.h"
#include "orderflow/util.h"

struct auth;
struct httpd_req;
struct evbuffer;
struct pg_pool;
struct worker_set;
struct worker;

#define AUTH_KEY_PREFIX "ofk_"		/* every API key starts with it */
#define AUTH_KEY_ID_LEN 16		/* hex digits of a key id */
#define AUTH_KEY_SECRET_BYTES 32	/* random bytes in a new key's secret */
#define AUTH_KEY_SECRET_MIN 32		/* base64url characters a secret needs at least */
#define AUTH_KEY_SECRET_MAX 128		/* and may have at most */
/* Longest API key accepted, without the terminating NUL. */
#define AUTH_KEY_MAX_LEN (4 + AUTH_KEY_ID_LEN + 1 + AUTH_KEY_SECRET_MAX)
#define AUTH_KEY_HASH_LEN 32		/* SHA-256 */
#define AUTH_CACHE_MAX 4096		/* key ids a worker remembers; the oldest goes first */
#define AUTH_NAME_MAX 100		/* characters in an API key's name */

/* How the caller proved who it is. */
enum auth_kind {
	AUTH_KIND_JWT,		/* Authorization: Bearer <jwt> */
	AUTH_KIND_APIKEY,	/* Authorization: ApiKey <key> */
};

/* The outcome handed to auth_cb. */
struct auth_result {
	bool		ok;		/* false: the request was already answered */
	enum auth_kind	kind;		/* meaningful when ok */
	char		creator_id[JWT_UUID_LEN + 1]; /* lower-case UUID, when ok */
	char		subject[JWT_UUID_LEN + 1]; /* rate-limit key: creator id or key id */
};

/*
 * Called exactly once per auth_request, possibly before it returns.  On
 * success hr is the request, still to be answered by the caller; on failure
 * hr is NULL (it was answered and freed) and the caller only releases arg.
 */
typedef void auth_cb(struct httpd_req *hr, const struct auth_result *res, void *arg);

/* Register the prepared statements (before pg_pool_start). */
void auth_prepare(struct pg_pool *pg);
/* The worker's authenticator; free it after pg_pool_close so no lookup is left. */
struct auth *auth_new(struct worker *w);
void auth_free(struct auth *a);
/* Authenticate hr from its Authorization header; see auth_cb. */
void auth_request(struct auth *a, struct httpd_req *hr, auth_cb *cb, void *arg);
/*
 * Prometheus lines: credentials refused, and requests refused 429 because
 * their address failed more than auth.failure_burst times of late (one
 * failure forgiven per auth.failure_refill), before any check or query.
 */
void auth_metrics(struct evbuffer *out, struct worker_set *s);
/* Key ids in the cache now (expired ones included until they are purged). */
size_t auth_cache_count(const struct auth *a);

/*
 * A new random key (AUTH_KEY_MAX_LEN + 1 bytes) and its id.  False only
 * when the system's random generator fails.
 */
bool auth_key_generate(char *key, char id[AUTH_KEY_ID_LEN + 1]) MUSTCHECK;
/* True when key (len bytes) has the API key format; its id goes to id. */
bool auth_key_parse(const char *key, size_t len, char id[AUTH_KEY_ID_LEN + 1]);
/* True when s is a key id: exactly 16 lower-case hex digits. */
bool auth_key_id_valid(const char *s);
/* SHA-256 of the whole key, the form api_keys.key_hash stores. */
void auth_key_hash(const char *key, size_t len, unsigned char out[AUTH_KEY_HASH_LEN]);

#endif
