/*
 * auth: the Authorization header of dashboard requests, and API keys.
 *
 * A JWT is verified on the spot, and its sub must be a creator: whether it
 * is one is remembered per worker for auth.api_key_ttl (one prepared query
 * on a miss), so a signed-in user of the identity provider who is no
 * creator gets 403, never an empty dashboard.  An API key is looked up by its id: the
 * worker's cache holds, per id, what the database said (unknown, or the
 * creator, the stored hash and whether the key is revoked) until
 * auth.api_key_ttl has passed; a miss costs one prepared query.  The hash
 * of the presented key is compared with the stored one in constant time
 * on every request, so the cache never holds a secret and a wrong secret
 * for a known id is refused without a query.  The cache is a hash table
 * with a per-worker random seed (ids are attacker-chosen) and a list in
 * insertion order, so the oldest entry is the one evicted at
 * AUTH_CACHE_MAX and expired entries are found at the head.
 */
#include "config.h"

#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <libpq-fe.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/queue.h>
#include <stdatomic.h>

#include "orderflow/auth.h"
#include "orderflow/config.h"
#include "orderflow/httpd.h"
#include "orderflow/jwt.h"
#include "orderflow/log.h"
#include "orderflow/pg.h"
#include "orderflow/smap.h"
#include "orderflow/worker.h"

#define AUTH_BUCKET_BITS 13		/* 8192 buckets for at most 4096 entries */
#define AUTH_BUCKETS (1u << AUTH_BUCKET_BITS)
#define AUTH_RETRY_AFTER_S 1		/* Retry-After of a 503 */

/* A JWT's sub must be a creator: signed-in users of the identity provider need not be. */
static const char auth_creator_sql[] = "SELECT 1 FROM creators WHERE id = $1::uuid";
static const char auth_key_sql[] =
    "SELECT creator_id::text, key_hash, revoked_at IS NULL FROM api_keys WHERE id = $1";
/* last_used_at is for people: written at most once a minute per key. */
static const char auth_touch_sql[] =
    "UPDATE api_keys SET last_used_at = now() WHERE id = $1 AND revoked_at IS NULL"
    " AND (last_used_at IS NULL OR last_used_at < now() - interval '1 minute')";

/* What the database said about one key id, remembered for api_key_ttl. */
struct auth_entry {
	TAILQ_ENTRY(auth_entry) age;	/* on auth.ages, oldest first */
	struct auth_entry *next;	/* same bucket */
	char		id[AUTH_KEY_ID_LEN + 1];
	bool		found;		/* a row exists for the id */
	bool		active;		/* not revoked */
	char		creator_id[JWT_UUID_LEN + 1];
	unsigned char	hash[AUTH_KEY_HASH_LEN]; /* api_keys.key_hash */
	int64_t		expires_ms;	/* monotonic */
};

/* One key lookup in flight; the pg batch's argument. */
struct auth_pending {
	TAILQ_ENTRY(auth_pending) entry; /* on auth.pending */
	struct auth	*a;		/* NULL once the authenticator was freed */
	struct httpd_req *hr;
	auth_cb		*cb;
	void		*arg;
	char		id[AUTH_KEY_ID_LEN + 1];
	unsigned char	hash[AUTH_KEY_HASH_LEN]; /* of the presented key */
	char		creator[JWT_UUID_LEN + 1]; /* a JWT's sub being looked up, else "" */
};

/* Whether a JWT subject is a creator, remembered for api_key_ttl. */
struct auth_creator {
	bool		exists;
	int64_t		expires_ms;	/* monotonic */
};

/* A client address's recent authentication failures: a token bucket. */
struct auth_fails {
	double		tokens;		/* failures it may still make at once */
	int64_t		at_ms;		/* monotonic, when tokens was computed */
};

struct auth {
	struct worker	*w;
	struct auth_entry *buckets[AUTH_BUCKETS];
	TAILQ_HEAD(, auth_entry) ages;	/* every entry, oldest first */
	size_t		count;		/* entries */
	uint64_t	seed;		/* bucket hash key */
	TAILQ_HEAD(, auth_pending) pending; /* lookups in flight */
	struct smap	*creators;	/* JWT subject -> struct auth_creator */
	struct smap	*fails;		/* client address -> struct auth_fails */
	atomic_ullong	failures;	/* credentials refused (401, 403) */
	atomic_ullong	throttled;	/* refused 429 before any check */
};

void
auth_prepare(struct pg_pool *pg)
{
	pg_pool_prepare(pg, "auth_key", auth_key_sql);
	pg_pool_prepare(pg, "auth_creator", auth_creator_sql);
	pg_pool_prepare(pg, "auth_touch", auth_touch_sql);
}

struct auth *
auth_new(struct worker *w)
{
	struct auth *a = xcalloc(1, sizeof(*a));

	a->w = w;
	TAILQ_INIT(&a->ages);
	TAILQ_INIT(&a->pending);
	a->seed = ((uint64_t)util_random() << 32) | util_random();
	a->creators = smap_new();
	a->fails = smap_new();
	return a;
}

void
auth_free(struct auth *a)
{
	struct auth_entry *e;
	struct auth_pending *p;

	if (a == NULL)
		return;
	/* A lookup still out answers its request when it completes, uncached. */
	while ((p = TAILQ_FIRST(&a->pending)) != NULL) {
		TAILQ_REMOVE(&a->pending, p, entry);
		p->a = NULL;
	}
	while ((e = TAILQ_FIRST(&a->ages)) != NULL) {
		TAILQ_REMOVE(&a->ages, e, age);
		free(e);
	}
	smap_free(a->creators, free);
	smap_free(a->fails, free);
	free(a);
}

size_t
auth_cache_count(const struct auth *a)
{
	return a->count;
}

/* --- API key format -------------------------------------------------- */

bool
auth_key_id_valid(const char *s)
{
	size_t i;

	for (i = 0; i < AUTH_KEY_ID_LEN; i++)
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
			return false;
	return s[i] == '\0';
}

bool
auth_key_parse(const char *key, size_t len, char id[AUTH_KEY_ID_LEN + 1])
{
	const size_t head = sizeof(AUTH_KEY_PREFIX) - 1 + AUTH_KEY_ID_LEN + 1;

	id[0] = '\0';
	if (len < head + AUTH_KEY_SECRET_MIN || len > AUTH_KEY_MAX_LEN ||
	    memcmp(key, AUTH_KEY_PREFIX, sizeof(AUTH_KEY_PREFIX) - 1) != 0 || key[head - 1] != '_')
		return false;
	for (size_t i = head; i < len; i++) {
		char c = key[i];

		if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
		    c == '-' || c == '_'))
			return false;
	}
	memcpy(id, key + sizeof(AUTH_KEY_PREFIX) - 1, AUTH_KEY_ID_LEN);
	id[AUTH_KEY_ID_LEN] = '\0';
	if (!auth_key_id_valid(id)) {
		id[0] = '\0';
		return false;
	}
	return true;
}

void
auth_key_hash(const char *key, size_t len, unsigned char out[AUTH_KEY_HASH_LEN])
{
	unsigned int n = 0;

	if (EVP_Digest(key, len, out, &n, EVP_sha256(), NULL) != 1 || n != AUTH_KEY_HASH_LEN)
		abort();
}

bool
auth_key_generate(char *key, char id[AUTH_KEY_ID_LEN + 1])
{
	static const char hex[] = "0123456789abcdef";
	unsigned char idb[AUTH_KEY_ID_LEN / 2], secret[AUTH_KEY_SECRET_BYTES];
	char enc[AUTH_KEY_SECRET_BYTES * 4 / 3 + 4];

	if (RAND_bytes(idb, sizeof(idb)) != 1 || RAND_bytes(secret, sizeof(secret)) != 1)
		return false;
	for (size_t i = 0; i < sizeof(idb); i++) {
		id[2 * i] = hex[idb[i] >> 4];
		id[2 * i + 1] = hex[idb[i] & 0xf];
	}
	id[AUTH_KEY_ID_LEN] = '\0';
	jwt_b64url_encode(secret, sizeof(secret), enc);
	snprintf(key, AUTH_KEY_MAX_LEN + 1, "%s%s_%s", AUTH_KEY_PREFIX, id, enc);
	OPENSSL_cleanse(secret, sizeof(secret));
	OPENSSL_cleanse(enc, sizeof(enc));
	return true;
}

/* --- the cache -------------------------------------------------------- */

static uint32_t
auth_bucket(const struct auth *a, const char *id)
{
	uint64_t v = strtoull(id, NULL, 16) ^ a->seed;

	v = (v ^ (v >> 31)) * 0x9e3779b97f4a7c15ULL;
	return (uint32_t)(v >> (64 - AUTH_BUCKET_BITS));
}

static void
auth_cache_remove(struct auth *a, struct auth_entry *e)
{
	struct auth_entry **pp = &a->buckets[auth_bucket(a, e->id)];

	while (*pp != e)
		pp = &(*pp)->next;
	*pp = e->next;
	TAILQ_REMOVE(&a->ages, e, age);
	a->count--;
	free(e);
}

/* The live entry for id, or NULL; an expired one is dropped on the way. */
static struct auth_entry *
auth_cache_find(struct auth *a, const char *id, int64_t now_ms)
{
	struct auth_entry *e;

	for (e = a->buckets[auth_bucket(a, id)]; e != NULL; e = e->next)
		if (strcmp(e->id, id) == 0)
			break;
	if (e != NULL && e->expires_ms <= now_ms) {
		auth_cache_remove(a, e);
		e = NULL;
	}
	return e;
}

/* Remember e (copied) for ttl_ms, replacing what was known of its id. */
static void
auth_cache_put(struct auth *a, const struct auth_entry *src, int64_t now_ms, int64_t ttl_ms)
{
	struct auth_entry *e, *old;
	uint32_t b;

	if (ttl_ms <= 0)
		return;
	if ((old = auth_cache_find(a, src->id, now_ms)) != NULL)
		auth_cache_remove(a, old);
	while ((old = TAILQ_FIRST(&a->ages)) != NULL &&
	    (old->expires_ms <= now_ms || a->count >= AUTH_CACHE_MAX))
		auth_cache_remove(a, old);
	e = xmalloc(sizeof(*e));
	*e = *src;
	e->expires_ms = now_ms + ttl_ms;
	b = auth_bucket(a, e->id);
	e->next = a->buckets[b];
	a->buckets[b] = e;
	TAILQ_INSERT_TAIL(&a->ages, e, age);
	a->count++;
}

/* --- failures per client address --------------------------------------- */

/* The request's peer address as text ("" when unknown). */
static void
auth_peer(struct httpd_req *hr, char out[64])
{
	struct evhttp_connection *conn = evhttp_request_get_connection(hr->req);
	char *addr = NULL;
	ev_uint16_t port = 0;

	out[0] = '\0';
	if (conn != NULL)
		evhttp_connection_get_peer(conn, &addr, &port);
	if (addr != NULL)
		snprintf(out, 64, "%s", addr);
}

/* The bucket of ip refilled to now; NULL when none is kept (never failed, or limiting is off). */
static struct auth_fails *
auth_fails_of(struct auth *a, const char *ip, int64_t now_ms)
{
	const struct config *cfg = a->w->cfg;
	struct auth_fails *f = smap_get(a->fails, ip);

	if (f == NULL || cfg->auth.failure_burst == 0)
		return NULL;
	f->tokens += (double)(now_ms - f->at_ms) / (double)cfg->auth.failure_refill;
	if (f->tokens > (double)cfg->auth.failure_burst)
		f->tokens = (double)cfg->auth.failure_burst;
	f->at_ms = now_ms;
	return f;
}

/* Count one refused credential of the request's address. */
static void
auth_failed(struct httpd_req *hr)
{
	struct auth *a = hr->w->svc[SERVICE_AUTH];
	int64_t now = util_mono_us() / 1000, burst;
	struct auth_fails *f;
	char ip[64];

	if (a == NULL)
		return;
	util_count(&a->failures, 1);
	if ((burst = a->w->cfg->auth.failure_burst) == 0)
		return;
	auth_peer(hr, ip);
	if ((f = auth_fails_of(a, ip, now)) == NULL) {
		/* Bounded: a full table starts again (an attacker with many addresses gains little). */
		if (smap_count(a->fails) >= AUTH_CACHE_MAX) {
			smap_free(a->fails, free);
			a->fails = smap_new();
		}
		f = xmalloc(sizeof(*f));
		*f = (struct auth_fails){ (double)burst, now };
		smap_put(a->fails, ip, f);
	}
	f->tokens -= 1.0;
}

/* True (after answering 429) when the address failed too often of late. */
static bool
auth_throttled(struct auth *a, struct httpd_req *hr, auth_cb *cb, void *arg)
{
	struct auth_result res = { .ok = false };
	struct auth_fails *f;
	char ip[64], secs[24];
	double wait_s;

	if (a->w->cfg->auth.failure_burst == 0)
		return false;
	auth_peer(hr, ip);
	if ((f = auth_fails_of(a, ip, util_mono_us() / 1000)) == NULL || f->tokens >= 1.0)
		return false;
	util_count(&a->throttled, 1);
	wait_s = (1.0 - f->tokens) * (double)a->w->cfg->auth.failure_refill / 1000.0;
	snprintf(secs, sizeof(secs), "%lld", (long long)wait_s + 1);
	evhttp_add_header(evhttp_request_get_output_headers(hr->req), "Retry-After", secs);
	httpd_error(hr, 429, "too_many_failures", "too many failed authentications from this "
	    "address: try again in %s s", secs);
	cb(NULL, &res, arg);
	return true;
}

void
auth_metrics(struct evbuffer *out, struct worker_set *s)
{
	unsigned long long f = 0, t = 0;

	for (int i = 0; i < s->n; i++) {
		struct auth *a = s->workers[i].svc[SERVICE_AUTH];

		f += atomic_load(&a->failures);
		t += atomic_load(&a->throttled);
	}
	evbuffer_add_printf(out,
	    "# HELP orderflow_auth_failures_total Dashboard credentials refused (401, 403).\n"
	    "# TYPE orderflow_auth_failures_total counter\n"
	    "orderflow_auth_failures_total %llu\n"
	    "# HELP orderflow_auth_throttled_total Requests refused 429 for an address's failures, "
	    "before any check.\n"
	    "# TYPE orderflow_auth_throttled_total counter\n"
	    "orderflow_auth_throttled_total %llu\n", f, t);
}

/* --- answers ---------------------------------------------------------- */

/* 401; presented: credentials were sent but are bad (error="invalid_token"). */
static void
auth_refuse(struct httpd_req *hr, bool presented, const char *why, auth_cb *cb, void *arg)
{
	struct auth_result res = { .ok = false };

	log_debug("unauthorized", "path=%s why=%s", log_quote(hr->path), log_quote(why));
	if (presented)
		auth_failed(hr);
	evhttp_add_header(evhttp_request_get_output_headers(hr->req), "WWW-Authenticate",
	    presented ? "Bearer realm=\"orderflow\", error=\"invalid_token\"" :
	    "Bearer realm=\"orderflow\"");
	httpd_error(hr, 401, "unauthorized", "%s", why);
	cb(NULL, &res, arg);
}

static void
auth_unavailable(struct httpd_req *hr, auth_cb *cb, void *arg)
{
	struct auth_result res = { .ok = false };

	httpd_unavailable(hr, AUTH_RETRY_AFTER_S, "database unavailable");
	cb(NULL, &res, arg);
}

static void
auth_accept(struct httpd_req *hr, enum auth_kind kind, const char *creator_id,
    const char *subject, auth_cb *cb, void *arg)
{
	struct auth_result res = { .ok = true, .kind = kind };

	snprintf(res.creator_id, sizeof(res.creator_id), "%s", creator_id);
	snprintf(res.subject, sizeof(res.subject), "%s", subject);
	cb(hr, &res, arg);
}

/* Decide from what is known of the key's id; hash is the presented key's. */
static void
auth_key_decide(struct httpd_req *hr, const struct auth_entry *e, const unsigned char *hash,
    auth_cb *cb, void *arg)
{
	/* Compare even for an unknown id, so timing tells nothing either way. */
	bool match = CRYPTO_memcmp(e->hash, hash, AUTH_KEY_HASH_LEN) == 0 && e->found;

	if (!match)
		auth_refuse(hr, true, "invalid API key", cb, arg);
	else if (!e->active)
		auth_refuse(hr, true, "API key revoked", cb, arg);
	else
		auth_accept(hr, AUTH_KIND_APIKEY, e->creator_id, e->id, cb, arg);
}

/* --- the database lookup ---------------------------------------------- */

static void
auth_on_touch(struct pg_batch *b, void *arg)
{
	if (pg_batch_error(b) != NULL)
		log_debug("api key last_used_at not written", "error=%s",
		    log_quote(pg_batch_error(b)));
}

/* Record that a key was used; best effort, nobody waits for it. */
static void
auth_touch(struct auth *a, const char *id)
{
	struct pg_batch *b = pg_batch_new(auth_on_touch, NULL);

	pg_batch_add(b, true, "auth_touch", 1, (const char *[]){ id });
	if (pg_submit(a->w->pg, b) != PG_OK)
		log_debug("api key last_used_at not written", "error=%s", "database unavailable");
}

/* The row, if any, as a cache entry; false when the answer makes no sense. */
static bool
auth_row(PGresult *r, const char *id, struct auth_entry *e)
{
	unsigned char *hash;
	size_t n = 0;

	memset(e, 0, sizeof(*e));
	snprintf(e->id, sizeof(e->id), "%s", id);
	if (r == NULL || PQresultStatus(r) != PGRES_TUPLES_OK || PQnfields(r) != 3)
		return false;
	if (PQntuples(r) == 0)
		return true;
	if (!jwt_uuid_parse(PQgetvalue(r, 0, 0), (size_t)PQgetlength(r, 0, 0), e->creator_id))
		return false;
	hash = PQunescapeBytea((const unsigned char *)PQgetvalue(r, 0, 1), &n);
	if (hash == NULL)
		return false;
	if (n == AUTH_KEY_HASH_LEN)
		memcpy(e->hash, hash, n);
	PQfreemem(hash);
	e->found = n == AUTH_KEY_HASH_LEN;
	e->active = strcmp(PQgetvalue(r, 0, 2), "t") == 0;
	return true;
}

static void
auth_on_key(struct pg_batch *b, void *arg)
{
	struct auth_pending *p = arg;
	struct auth *a = p->a;
	struct auth_entry e;

	if (a != NULL)
		TAILQ_REMOVE(&a->pending, p, entry);
	if (pg_batch_error(b) != NULL) {
		log_warn("api key lookup failed", "error=%s", log_quote(pg_batch_error(b)));
		auth_unavailable(p->hr, p->cb, p->arg);
	} else if (!auth_row(pg_batch_result(b, 0), p->id, &e)) {
		log_error("api key lookup: unexpected answer", "key_id=%s", p->id);
		auth_unavailable(p->hr, p->cb, p->arg);
	} else {
		if (a != NULL) {
			auth_cache_put(a, &e, util_mono_us() / 1000, a->w->cfg->auth.api_key_ttl);
			if (e.found && e.active && CRYPTO_memcmp(e.hash, p->hash,
			    AUTH_KEY_HASH_LEN) == 0)
				auth_touch(a, p->id);
		}
		auth_key_decide(p->hr, &e, p->hash, p->cb, p->arg);
	}
	free(p);
}

/* ApiKey <key>: from the cache, else one query. */
static void
auth_apikey(struct auth *a, struct httpd_req *hr, const char *key, size_t len, auth_cb *cb,
    void *arg)
{
	struct auth_pending *p;
	struct auth_entry *e;
	struct pg_batch *b;
	char id[AUTH_KEY_ID_LEN + 1];
	unsigned char hash[AUTH_KEY_HASH_LEN];

	if (!auth_key_parse(key, len, id)) {
		auth_refuse(hr, true, "malformed API key", cb, arg);
		return;
	}
	auth_key_hash(key, len, hash);
	if ((e = auth_cache_find(a, id, util_mono_us() / 1000)) != NULL) {
		auth_key_decide(hr, e, hash, cb, arg);
		return;
	}
	p = xcalloc(1, sizeof(*p));
	p->a = a;
	p->hr = hr;
	p->cb = cb;
	p->arg = arg;
	memcpy(p->id, id, sizeof(id));
	memcpy(p->hash, hash, sizeof(hash));
	b = pg_batch_new(auth_on_key, p);
	pg_batch_add(b, true, "auth_key", 1, (const char *[]){ id });
	if (pg_submit(a->w->pg, b) != PG_OK) {
		free(p);
		auth_unavailable(hr, cb, arg);
		return;
	}
	TAILQ_INSERT_TAIL(&a->pending, p, entry);
}

/* --- a JWT's subject --------------------------------------------------- */

static void
auth_jwt_decide(struct httpd_req *hr, const char *creator, bool exists, auth_cb *cb, void *arg)
{
	struct auth_result res = { .ok = false };

	if (exists) {
		auth_accept(hr, AUTH_KIND_JWT, creator, creator, cb, arg);
		return;
	}
	log_debug("forbidden", "path=%s why=%s", log_quote(hr->path), "sub is no creator");
	auth_failed(hr);
	httpd_error(hr, 403, "unknown_creator", "the token is valid, but its subject is no creator "
	    "of this service");
	cb(NULL, &res, arg);
}

/* Remember the answer; a full table starts again (it holds at most AUTH_CACHE_MAX). */
static void
auth_creator_put(struct auth *a, const char *creator, bool exists)
{
	struct auth_creator *c;
	int64_t ttl = a->w->cfg->auth.api_key_ttl;

	if (ttl <= 0)
		return;
	if (smap_count(a->creators) >= AUTH_CACHE_MAX) {
		smap_free(a->creators, free);
		a->creators = smap_new();
	}
	c = xmalloc(sizeof(*c));
	*c = (struct auth_creator){ exists, util_mono_us() / 1000 + ttl };
	free(smap_put(a->creators, creator, c));
}

static void
auth_on_creator(struct pg_batch *b, void *arg)
{
	struct auth_pending *p = arg;
	PGresult *r = pg_batch_result(b, 0);

	if (p->a != NULL)
		TAILQ_REMOVE(&p->a->pending, p, entry);
	if (pg_batch_error(b) != NULL || r == NULL) {
		log_warn("creator lookup failed", "error=%s", log_quote(pg_batch_error(b)));
		auth_unavailable(p->hr, p->cb, p->arg);
	} else {
		if (p->a != NULL)
			auth_creator_put(p->a, p->creator, PQntuples(r) == 1);
		auth_jwt_decide(p->hr, p->creator, PQntuples(r) == 1, p->cb, p->arg);
	}
	free(p);
}

/* A verified token's subject: from the cache, else one query. */
static void
auth_jwt_subject(struct auth *a, struct httpd_req *hr, const char *creator, auth_cb *cb,
    void *arg)
{
	struct auth_creator *c = smap_get(a->creators, creator);
	struct auth_pending *p;
	struct pg_batch *b;

	if (c != NULL && c->expires_ms > util_mono_us() / 1000) {
		auth_jwt_decide(hr, creator, c->exists, cb, arg);
		return;
	}
	p = xcalloc(1, sizeof(*p));
	*p = (struct auth_pending){ .a = a, .hr = hr, .cb = cb, .arg = arg };
	snprintf(p->creator, sizeof(p->creator), "%s", creator);
	b = pg_batch_new(auth_on_creator, p);
	pg_batch_add(b, true, "auth_creator", 1, (const char *[]){ creator });
	if (pg_submit(a->w->pg, b) != PG_OK) {
		free(p);
		auth_unavailable(hr, cb, arg);
		return;
	}
	TAILQ_INSERT_TAIL(&a->pending, p, entry);
}

/* Bearer <jwt>: with the worker's current config. */
static void
auth_jwt(struct auth *a, struct httpd_req *hr, const char *token, size_t len, auth_cb *cb,
    void *arg)
{
	const struct config *cfg = a->w->cfg;
	char creator[JWT_UUID_LEN + 1];
	enum jwt_status st;
	const char *why;

	st = jwt_verify(token, len, cfg->auth.jwt_secret, cfg->auth.jwt_audience,
	    cfg->auth.jwt_leeway, util_wall_ms(), creator, &why);
	if (st != JWT_OK) {
		log_debug("jwt refused", "reason=%s", jwt_status_name(st));
		auth_refuse(hr, true, why, cb, arg);
		return;
	}
	auth_jwt_subject(a, hr, creator, cb, arg);
}

void
auth_request(struct auth *a, struct httpd_req *hr, auth_cb *cb, void *arg)
{
	const char *h = evhttp_find_header(evhttp_request_get_input_headers(hr->req),
	    "Authorization");
	size_t scheme, len;
	const char *cred;

	/* Before any check: a guesser's next try costs neither a hash nor a query. */
	if (auth_throttled(a, hr, cb, arg))
		return;
	if (h == NULL || h[strspn(h, " \t")] == '\0') {
		auth_refuse(hr, false, "authentication required: send Authorization: Bearer <token>"
		    " or Authorization: ApiKey <key>", cb, arg);
		return;
	}
	h += strspn(h, " \t");
	scheme = strcspn(h, " \t");
	cred = h + scheme + strspn(h + scheme, " \t");
	len = strcspn(cred, " \t");
	if (cred[len + strspn(cred + len, " \t")] != '\0') {
		auth_refuse(hr, true, "malformed Authorization header", cb, arg);
		return;
	}
	if (scheme == 6 && strncasecmp(h, "Bearer", 6) == 0 && len > 0)
		auth_jwt(a, hr, cred, len, cb, arg);
	else if (scheme == 6 && strncasecmp(h, "ApiKey", 6) == 0 && len > 0)
		auth_apikey(a, hr, cred, len, cb, arg);
	else if (len == 0)
		auth_refuse(hr, true, "the Authorization header holds no credentials", cb, arg);
	else
		auth_refuse(hr, false, "unsupported authorization scheme: use Bearer or ApiKey",
		    cb, arg);
}
