/*
 * Unit tests for jwt and auth: tokens built here with OpenSSL's HMAC and
 * checked against every rule, the API key format, and the per-worker
 * authenticator driven through stand-ins for pg and httpd (defined below)
 * that record what was queried and how each request was answered.
 */
#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <cmocka.h>

#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <libpq-fe.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "orderflow/auth.h"
#include "orderflow/config.h"
#include "orderflow/httpd.h"
#include "orderflow/jwt.h"
#include "orderflow/pg.h"
#include "orderflow/worker.h"

#define SECRET "super-secret-jwt-token-with-at-least-32-characters-long"
#define NOW_S 1700000000LL
#define NOW_MS (NOW_S * 1000)
#define SUB "3F2504E0-4F89-11D3-9A0C-0305E82C3301"
#define SUB_LOWER "3f2504e0-4f89-11d3-9a0c-0305e82c3301"
#define HS256 "{\"alg\":\"HS256\",\"typ\":\"JWT\"}"

/* ---- token building --------------------------------------------------- */

/* b64(header).b64(payload).b64(HMAC-SHA256(key)); key NULL: empty signature. */
static char *
make_token(const char *header, const char *payload, const char *key)
{
	size_t hl = strlen(header), pl = strlen(payload);
	char *t = malloc(2 * (hl + pl) + 128);
	unsigned char mac[EVP_MAX_MD_SIZE];
	unsigned int maclen = 0;
	size_t n;

	n = jwt_b64url_encode(header, hl, t);
	t[n++] = '.';
	n += jwt_b64url_encode(payload, pl, t + n);
	t[n++] = '.';
	t[n] = '\0';
	if (key != NULL) {
		HMAC(EVP_sha256(), key, (int)strlen(key), (unsigned char *)t, n - 1, mac, &maclen);
		jwt_b64url_encode(mac, maclen, t + n);
	}
	return t;
}

/* A payload with sub and exp (seconds from NOW_S) plus extra members. */
static char *
payload(const char *sub, long long exp_in, const char *extra)
{
	char *p = malloc(1024);

	snprintf(p, 1024, "{\"sub\":\"%s\",\"exp\":%lld%s%s}", sub, NOW_S + exp_in,
	    extra[0] != '\0' ? "," : "", extra);
	return p;
}

/* Verify with the usual secret, no audience, 30 s leeway, at NOW_MS. */
static enum jwt_status
verify_full(const char *token, const char *audience, int64_t leeway_ms, const char **why,
    char *creator)
{
	return jwt_verify(token, strlen(token), SECRET, audience, leeway_ms, NOW_MS, creator, why);
}

static void
expect(const char *token, const char *audience, enum jwt_status want, const char *want_why)
{
	char creator[JWT_UUID_LEN + 1];
	const char *why = NULL;
	enum jwt_status st = verify_full(token, audience, 30000, &why, creator);

	if (st != want)
		fail_msg("token %.80s: status %s (%s), want %s", token, jwt_status_name(st), why,
		    jwt_status_name(want));
	assert_non_null(why);
	if (want_why != NULL && strstr(why, want_why) == NULL)
		fail_msg("why \"%s\" does not contain \"%s\"", why, want_why);
	if (st != JWT_OK)
		assert_string_equal(creator, "");
}

/* Build header + payload signed with SECRET and expect a result. */
static void
expect_built(const char *header, const char *pl, const char *audience, enum jwt_status want,
    const char *want_why)
{
	char *t = make_token(header, pl, SECRET);

	expect(t, audience, want, want_why);
	free(t);
}

/* ---- JWT --------------------------------------------------------------- */

static void
test_jwt_valid(void **state)
{
	char *pl = payload(SUB, 3600, ""), *t = make_token(HS256, pl, SECRET);
	char creator[JWT_UUID_LEN + 1];
	const char *why;

	assert_int_equal(verify_full(t, "", 30000, &why, creator), JWT_OK);
	assert_string_equal(creator, SUB_LOWER);
	/* No typ at all is fine, and so is typ in lower case. */
	expect_built("{\"alg\":\"HS256\"}", pl, NULL, JWT_OK, NULL);
	expect_built("{\"alg\":\"HS256\",\"typ\":\"jwt\",\"kid\":\"k1\"}", pl, NULL, JWT_OK, NULL);
	free(t);
	free(pl);
}

static void
test_jwt_wrong_key(void **state)
{
	char *pl = payload(SUB, 3600, ""), *t = make_token(HS256, pl, "another-secret");
	char *good = make_token(HS256, pl, SECRET), *tampered;
	char *other = payload("11111111-2222-3333-4444-555555555555", 3600, "");
	size_t dot;

	expect(t, NULL, JWT_SIGNATURE, "bad signature");
	/* A payload swapped under a good signature. */
	tampered = make_token(HS256, other, SECRET);
	dot = (size_t)(strrchr(good, '.') - good);
	memcpy(strrchr(tampered, '.') + 1, good + dot + 1, strlen(good + dot + 1) + 1);
	expect(tampered, NULL, JWT_SIGNATURE, "bad signature");
	/* A truncated signature, and one with padding. */
	good[strlen(good) - 1] = '\0';
	expect(good, NULL, JWT_SIGNATURE, "bad signature");
	free(good);
	good = make_token(HS256, pl, SECRET);
	good = realloc(good, strlen(good) + 2);
	strcat(good, "=");
	expect(good, NULL, JWT_SIGNATURE, "bad signature");
	/* An empty secret refuses everything. */
	{
		char creator[JWT_UUID_LEN + 1];
		const char *why;
		char *ok = make_token(HS256, pl, SECRET);

		assert_int_equal(jwt_verify(ok, strlen(ok), "", NULL, 0, NOW_MS, creator, &why),
		    JWT_DISABLED);
		assert_string_equal(why, "JWT authentication is disabled");
		free(ok);
	}
	free(good);
	free(tampered);
	free(other);
	free(t);
	free(pl);
}

static void
test_jwt_alg_none(void **state)
{
	char *pl = payload(SUB, 3600, "");
	char *unsigned_tok = make_token("{\"alg\":\"none\",\"typ\":\"JWT\"}", pl, NULL);
	char *signed_tok = make_token("{\"alg\":\"none\",\"typ\":\"JWT\"}", pl, SECRET);

	expect(unsigned_tok, NULL, JWT_ALG, "algorithm not allowed");
	expect(signed_tok, NULL, JWT_ALG, "algorithm not allowed");
	expect_built("{\"alg\":\"None\"}", pl, NULL, JWT_ALG, "algorithm not allowed");
	free(unsigned_tok);
	free(signed_tok);
	free(pl);
}

static void
test_jwt_alg_others(void **state)
{
	char *pl = payload(SUB, 3600, "");

	expect_built("{\"alg\":\"RS256\",\"typ\":\"JWT\"}", pl, NULL, JWT_ALG, "algorithm not allowed");
	expect_built("{\"alg\":\"HS384\",\"typ\":\"JWT\"}", pl, NULL, JWT_ALG, "algorithm not allowed");
	expect_built("{\"alg\":\"hs256\"}", pl, NULL, JWT_ALG, "algorithm not allowed");
	expect_built("{\"alg\":\"HS256 \"}", pl, NULL, JWT_ALG, "algorithm not allowed");
	expect_built("{\"alg\":[\"HS256\"]}", pl, NULL, JWT_ALG, "algorithm not allowed");
	expect_built("{\"typ\":\"JWT\"}", pl, NULL, JWT_ALG, "no alg");
	expect_built("{\"alg\":\"HS256\",\"crit\":[\"exp\"]}", pl, NULL, JWT_ALG, "critical");
	expect_built("{\"alg\":\"HS256\",\"typ\":\"at+jwt\"}", pl, NULL, JWT_ALG, "typ");
	/* A duplicate alg must not let a parser pick the friendly one. */
	expect_built("{\"alg\":\"HS256\",\"alg\":\"none\"}", pl, NULL, JWT_MALFORMED, "header");
	free(pl);
}

static void
test_jwt_expiry(void **state)
{
	char *pl;
	char *t;
	char creator[JWT_UUID_LEN + 1];
	const char *why;

	pl = payload(SUB, -60, "");
	expect_built(HS256, pl, NULL, JWT_EXPIRED, "token expired");
	free(pl);
	/* Ten seconds past exp: inside the 30 s leeway. */
	pl = payload(SUB, -10, "");
	expect_built(HS256, pl, NULL, JWT_OK, NULL);
	t = make_token(HS256, pl, SECRET);
	assert_int_equal(verify_full(t, NULL, 0, &why, creator), JWT_EXPIRED);
	free(t);
	free(pl);
	/* exp == now is already expired. */
	pl = payload(SUB, 0, "");
	t = make_token(HS256, pl, SECRET);
	assert_int_equal(verify_full(t, NULL, 0, &why, creator), JWT_EXPIRED);
	assert_int_equal(verify_full(t, NULL, 1, &why, creator), JWT_OK);
	free(t);
	free(pl);
	/* exp required, a number, in range; a fractional NumericDate is fine. */
	expect_built(HS256, "{\"sub\":\"" SUB "\"}", NULL, JWT_CLAIMS, "no exp");
	expect_built(HS256, "{\"sub\":\"" SUB "\",\"exp\":\"1900000000\"}", NULL, JWT_CLAIMS, "exp");
	expect_built(HS256, "{\"sub\":\"" SUB "\",\"exp\":1e300}", NULL, JWT_CLAIMS, "exp");
	expect_built(HS256, "{\"sub\":\"" SUB "\",\"exp\":-5}", NULL, JWT_CLAIMS, "exp");
	expect_built(HS256, "{\"sub\":\"" SUB "\",\"exp\":1700000100.5}", NULL, JWT_OK, NULL);
	expect_built(HS256, "{\"sub\":\"" SUB "\",\"exp\":null}", NULL, JWT_CLAIMS, "exp");
}

static void
test_jwt_nbf_iat(void **state)
{
	char extra[64], *pl;

	snprintf(extra, sizeof(extra), "\"nbf\":%lld", NOW_S + 120);
	pl = payload(SUB, 3600, extra);
	expect_built(HS256, pl, NULL, JWT_NOT_YET_VALID, "not yet valid");
	free(pl);
	snprintf(extra, sizeof(extra), "\"nbf\":%lld", NOW_S + 10);
	pl = payload(SUB, 3600, extra);
	expect_built(HS256, pl, NULL, JWT_OK, NULL);
	free(pl);
	snprintf(extra, sizeof(extra), "\"iat\":%lld", NOW_S + 600);
	pl = payload(SUB, 3600, extra);
	expect_built(HS256, pl, NULL, JWT_NOT_YET_VALID, "issued in the future");
	free(pl);
	snprintf(extra, sizeof(extra), "\"iat\":%lld,\"nbf\":%lld", NOW_S - 5, NOW_S - 5);
	pl = payload(SUB, 3600, extra);
	expect_built(HS256, pl, NULL, JWT_OK, NULL);
	free(pl);
	pl = payload(SUB, 3600, "\"nbf\":\"soon\"");
	expect_built(HS256, pl, NULL, JWT_CLAIMS, "nbf");
	free(pl);
	pl = payload(SUB, 3600, "\"iat\":true");
	expect_built(HS256, pl, NULL, JWT_CLAIMS, "iat");
	free(pl);
}

static void
test_jwt_audience(void **state)
{
	char *pl;

	pl = payload(SUB, 3600, "\"aud\":\"authenticated\"");
	expect_built(HS256, pl, "authenticated", JWT_OK, NULL);
	expect_built(HS256, pl, "other", JWT_AUDIENCE, "audience mismatch");
	expect_built(HS256, pl, "", JWT_OK, NULL);
	free(pl);
	pl = payload(SUB, 3600, "\"aud\":[\"a\",\"authenticated\"]");
	expect_built(HS256, pl, "authenticated", JWT_OK, NULL);
	expect_built(HS256, pl, "b", JWT_AUDIENCE, "audience mismatch");
	free(pl);
	pl = payload(SUB, 3600, "\"aud\":[]");
	expect_built(HS256, pl, "authenticated", JWT_AUDIENCE, "audience mismatch");
	free(pl);
	pl = payload(SUB, 3600, "\"aud\":\"Authenticated\"");
	expect_built(HS256, pl, "authenticated", JWT_AUDIENCE, "audience mismatch");
	free(pl);
	pl = payload(SUB, 3600, "");
	expect_built(HS256, pl, "authenticated", JWT_AUDIENCE, "audience mismatch");
	free(pl);
}

static void
test_jwt_subject(void **state)
{
	char exp[64];

	snprintf(exp, sizeof(exp), "{\"exp\":%lld}", NOW_S + 3600);
	expect_built(HS256, exp, NULL, JWT_CLAIMS, "no sub");
	snprintf(exp, sizeof(exp), "{\"exp\":%lld,\"sub\":42}", NOW_S + 3600);
	expect_built(HS256, exp, NULL, JWT_CLAIMS, "not a UUID");
	{
		static const char *const bad[] = {
			"user-1", "", "3f2504e0-4f89-11d3-9a0c-0305e82c330", /* 35 chars */
			"3f2504e0-4f89-11d3-9a0c-0305e82c33011", "3f2504e04f8911d39a0c0305e82c3301",
			"3f2504e0-4f89-11d3-9a0c-0305e82c330g", "{3f2504e0-4f89-11d3-9a0c-0305e82c33}",
			"3f2504e0_4f89_11d3_9a0c_0305e82c3301",
		};

		for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
			char *pl = payload(bad[i], 3600, "");

			expect_built(HS256, pl, NULL, JWT_CLAIMS, "not a UUID");
			free(pl);
		}
	}
}

static void
test_jwt_malformed(void **state)
{
	char *pl = payload(SUB, 3600, ""), *t = make_token(HS256, pl, SECRET), *big;
	char buf[4096];
	size_t n;

	expect("", NULL, JWT_MALFORMED, "empty");
	expect("abc", NULL, JWT_MALFORMED, "three");
	expect("a.b", NULL, JWT_MALFORMED, "three");
	snprintf(buf, sizeof(buf), "%s.xyz", t);
	expect(buf, NULL, JWT_MALFORMED, "three");
	/* Padding, the standard alphabet, spaces: not base64url. */
	n = (size_t)(strchr(t, '.') - t);
	snprintf(buf, sizeof(buf), "%.*s=%s", (int)n, t, t + n);
	expect(buf, NULL, JWT_MALFORMED, "header");
	snprintf(buf, sizeof(buf), "%s", t);
	buf[3] = '+';
	expect(buf, NULL, JWT_MALFORMED, "header");
	buf[3] = ' ';
	expect(buf, NULL, JWT_MALFORMED, "header");
	/* The payload's base64 broken while the signature still covers it. */
	{
		char *bad = strdup(t), *p = strchr(bad, '.') + 1;
		unsigned char mac[32];
		unsigned int maclen;
		char *dot2;

		p[2] = '*';
		dot2 = strrchr(bad, '.');
		HMAC(EVP_sha256(), SECRET, (int)strlen(SECRET), (unsigned char *)bad,
		    (size_t)(dot2 - bad), mac, &maclen);
		jwt_b64url_encode(mac, maclen, dot2 + 1);
		expect(bad, NULL, JWT_MALFORMED, "payload");
		free(bad);
	}
	/* Empty parts, JSON that is not an object. */
	expect(".e30.", NULL, JWT_MALFORMED, "header");
	expect_built("[\"alg\",\"HS256\"]", pl, NULL, JWT_MALFORMED, "header");
	expect_built("{\"alg\":\"HS256\"", pl, NULL, JWT_MALFORMED, "header");
	expect_built(HS256, "[1,2]", NULL, JWT_MALFORMED, "payload");
	expect_built(HS256, "\"x\"", NULL, JWT_MALFORMED, "payload");
	expect_built(HS256, "{\"sub\":\"" SUB "\",\"sub\":\"" SUB "\"}", NULL, JWT_MALFORMED,
	    "payload");
	/* Oversized: refused before anything is decoded. */
	big = malloc(JWT_MAX_LEN + 2);
	memset(big, 'A', JWT_MAX_LEN + 1);
	big[JWT_MAX_LEN + 1] = '\0';
	big[10] = '.';
	big[20] = '.';
	expect(big, NULL, JWT_MALFORMED, "too long");
	free(big);
	{
		/* A valid token padded with a long claim past the limit. */
		char *filler = malloc(JWT_MAX_LEN), *p2, *t2;

		memset(filler, 'x', JWT_MAX_LEN - 40);
		filler[JWT_MAX_LEN - 40] = '\0';
		p2 = malloc(JWT_MAX_LEN + 200);
		snprintf(p2, JWT_MAX_LEN + 200, "{\"sub\":\"%s\",\"exp\":%lld,\"pad\":\"%s\"}", SUB,
		    NOW_S + 60, filler);
		t2 = make_token(HS256, p2, SECRET);
		expect(t2, NULL, JWT_MALFORMED, "too long");
		free(t2);
		free(p2);
		free(filler);
	}
	free(t);
	free(pl);
}

static void
test_jwt_supabase(void **state)
{
	char pl[2048], *t;
	char creator[JWT_UUID_LEN + 1];
	const char *why;

	/* The shape Supabase Auth issues for a signed-in user. */
	snprintf(pl, sizeof(pl),
	    "{\"aud\":\"authenticated\",\"exp\":%lld,\"iat\":%lld,"
	    "\"iss\":\"https://abcdefghij.supabase.co/auth/v1\","
	    "\"sub\":\"8d3c7f7e-5b1a-4c2e-9f0d-1a2b3c4d5e6f\",\"email\":\"creator@example.com\","
	    "\"phone\":\"\",\"app_metadata\":{\"provider\":\"email\",\"providers\":[\"email\"]},"
	    "\"user_metadata\":{\"email_verified\":true},\"role\":\"authenticated\",\"aal\":\"aal1\","
	    "\"amr\":[{\"method\":\"password\",\"timestamp\":%lld}],"
	    "\"session_id\":\"0c1f7c4e-2d7e-4d6a-9a52-3c6b1e2f4a5b\",\"is_anonymous\":false}",
	    NOW_S + 3000, NOW_S - 600, NOW_S - 600);
	t = make_token("{\"alg\":\"HS256\",\"kid\":\"Xk1lMf2NaB3bQ9nZ\",\"typ\":\"JWT\"}", pl, SECRET);
	assert_int_equal(jwt_verify(t, strlen(t), SECRET, "authenticated", 30000, NOW_MS, creator,
	    &why), JWT_OK);
	assert_string_equal(creator, "8d3c7f7e-5b1a-4c2e-9f0d-1a2b3c4d5e6f");
	free(t);
	/* The anon key is a JWT too, without sub: not a user. */
	snprintf(pl, sizeof(pl), "{\"iss\":\"supabase\",\"ref\":\"abcdefghij\",\"role\":\"anon\","
	    "\"iat\":%lld,\"exp\":%lld}", NOW_S - 600, NOW_S + 3000);
	t = make_token(HS256, pl, SECRET);
	assert_int_equal(jwt_verify(t, strlen(t), SECRET, "", 30000, NOW_MS, creator, &why),
	    JWT_CLAIMS);
	free(t);
}

static void
test_b64url(void **state)
{
	unsigned char out[16];
	char enc[32];

	assert_int_equal(jwt_b64url_encode("", 0, enc), 0);
	assert_int_equal(jwt_b64url_encode("f", 1, enc), 2);
	assert_string_equal(enc, "Zg");
	jwt_b64url_encode("foob", 4, enc);
	assert_string_equal(enc, "Zm9vYg");
	jwt_b64url_encode("\xfb\xff", 2, enc);
	assert_string_equal(enc, "-_8");
	assert_int_equal(jwt_b64url_decode("Zm9vYg", 6, out), 4);
	assert_memory_equal(out, "foob", 4);
	assert_int_equal(jwt_b64url_decode("-_8", 3, out), 2);
	assert_memory_equal(out, "\xfb\xff", 2);
	assert_int_equal(jwt_b64url_decode("Zm9vYg==", 8, out), -1);
	assert_int_equal(jwt_b64url_decode("Zh", 2, out), -1);	/* trailing bits set */
	assert_int_equal(jwt_b64url_decode("Z", 1, out), -1);
	assert_int_equal(jwt_b64url_decode("+/8", 3, out), -1);
}

/* ---- API key format ----------------------------------------------------- */

static void
test_key_format(void **state)
{
	char key[AUTH_KEY_MAX_LEN + 1], key2[AUTH_KEY_MAX_LEN + 1];
	char id[AUTH_KEY_ID_LEN + 1], id2[AUTH_KEY_ID_LEN + 1], parsed[AUTH_KEY_ID_LEN + 1];
	char bad[AUTH_KEY_MAX_LEN + 8];
	unsigned char h1[AUTH_KEY_HASH_LEN], h2[AUTH_KEY_HASH_LEN];

	assert_true(auth_key_generate(key, id));
	assert_true(auth_key_generate(key2, id2));
	assert_int_equal(strlen(key), 4 + 16 + 1 + 43);
	assert_memory_equal(key, "ofk_", 4);
	assert_true(auth_key_id_valid(id));
	assert_string_not_equal(key, key2);
	assert_string_not_equal(id, id2);
	assert_true(auth_key_parse(key, strlen(key), parsed));
	assert_string_equal(parsed, id);
	auth_key_hash(key, strlen(key), h1);
	auth_key_hash(key2, strlen(key2), h2);
	assert_memory_not_equal(h1, h2, AUTH_KEY_HASH_LEN);

	assert_false(auth_key_parse(key, strlen(key) - 12, parsed));	/* secret too short */
	assert_string_equal(parsed, "");
	snprintf(bad, sizeof(bad), "ofx_%s", key + 4);
	assert_false(auth_key_parse(bad, strlen(bad), parsed));
	snprintf(bad, sizeof(bad), "%s", key);
	bad[5] = 'G';
	assert_false(auth_key_parse(bad, strlen(bad), parsed));
	snprintf(bad, sizeof(bad), "%s", key);
	bad[5] = (char)(bad[5] >= 'a' ? 'A' : 'B');	/* upper-case hex is not an id */
	assert_false(auth_key_parse(bad, strlen(bad), parsed));
	snprintf(bad, sizeof(bad), "%s", key);
	bad[20] = '-';
	assert_false(auth_key_parse(bad, strlen(bad), parsed));
	snprintf(bad, sizeof(bad), "%s", key);
	bad[30] = '=';
	assert_false(auth_key_parse(bad, strlen(bad), parsed));
	memset(bad, 'a', sizeof(bad));
	memcpy(bad, key, 21);
	assert_false(auth_key_parse(bad, AUTH_KEY_MAX_LEN + 1, parsed));	/* too long */
	assert_true(auth_key_parse(bad, AUTH_KEY_MAX_LEN, parsed));
	assert_false(auth_key_id_valid("0123456789abcdef0"));
	assert_false(auth_key_id_valid("0123456789abcde"));
	assert_false(auth_key_id_valid("0123456789ABCDEF"));
	assert_true(auth_key_id_valid("0123456789abcdef"));
}

/* ---- stand-ins for pg and httpd ----------------------------------------- */

struct pg_batch {
	pg_batch_cb	*cb;
	void		*arg;
	char		stmt[32];
	char		param[64];
};

static struct {
	enum pg_submit	refuse;		/* what pg_submit answers */
	struct pg_batch	*queue[8192];	/* submitted, not completed */
	int		n;
	int		submitted;
	const char	*error;		/* pg_batch_error during completion */
	PGresult	*result;	/* pg_batch_result during completion */
} fake;

static struct {
	int		status;		/* 0: not answered */
	char		code[64];
	char		message[256];
	char		www[128];
	char		retry_after[16];
	int		calls;		/* callbacks run */
	struct auth_result res;
	struct httpd_req *cb_hr;
} seen;

void
pg_pool_prepare(struct pg_pool *p, const char *name, const char *sql)
{
}

struct pg_batch *
pg_batch_new(pg_batch_cb *cb, void *arg)
{
	struct pg_batch *b = calloc(1, sizeof(*b));

	b->cb = cb;
	b->arg = arg;
	return b;
}

void
pg_batch_add(struct pg_batch *b, bool prepared, const char *stmt, int nparams,
    const char *const *values)
{
	snprintf(b->stmt, sizeof(b->stmt), "%s", stmt);
	snprintf(b->param, sizeof(b->param), "%s", nparams > 0 ? values[0] : "");
}

enum pg_submit
pg_submit(struct pg_pool *p, struct pg_batch *b)
{
	if (fake.refuse != PG_OK) {
		free(b);
		return fake.refuse;
	}
	fake.queue[fake.n++] = b;
	fake.submitted++;
	return PG_OK;
}

const char *
pg_batch_error(const struct pg_batch *b)
{
	return fake.error;
}

PGresult *
pg_batch_result(const struct pg_batch *b, int i)
{
	return fake.result;
}

static void
record_answer(struct httpd_req *hr, int status, const char *code, const char *message)
{
	struct evkeyvalq *out = evhttp_request_get_output_headers(hr->req);
	const char *www = evhttp_find_header(out, "WWW-Authenticate");
	const char *ra = evhttp_find_header(out, "Retry-After");

	assert_int_equal(seen.status, 0);	/* answered once */
	seen.status = status;
	snprintf(seen.code, sizeof(seen.code), "%s", code);
	snprintf(seen.message, sizeof(seen.message), "%s", message);
	snprintf(seen.www, sizeof(seen.www), "%s", www != NULL ? www : "");
	snprintf(seen.retry_after, sizeof(seen.retry_after), "%s", ra != NULL ? ra : "");
}

void
httpd_error(struct httpd_req *hr, int status, const char *code, const char *fmt, ...)
{
	char message[256];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(message, sizeof(message), fmt, ap);
	va_end(ap);
	record_answer(hr, status, code, message);
}

void
httpd_unavailable(struct httpd_req *hr, int retry_after_s, const char *why)
{
	char secs[16];

	snprintf(secs, sizeof(secs), "%d", retry_after_s);
	evhttp_add_header(evhttp_request_get_output_headers(hr->req), "Retry-After", secs);
	record_answer(hr, 503, "unavailable", why);
}

/* ---- the authenticator ------------------------------------------------- */

static struct worker *test_worker;
static struct auth *test_auth;
static struct httpd_req test_hr;

static void
on_auth(struct httpd_req *hr, const struct auth_result *res, void *arg)
{
	assert_ptr_equal(arg, &seen);
	seen.calls++;
	seen.res = *res;
	seen.cb_hr = hr;
}

static int
setup_auth(void **state)
{
	char *cause = NULL;
	struct config *cfg = config_load_string("[auth]\njwt_secret = " SECRET "\n"
	    "jwt_audience = authenticated\napi_key_ttl = 10s\n", "t.conf", &cause);

	if (cfg == NULL)
		fail_msg("config: %s", cause);
	memset(&fake, 0, sizeof(fake));
	test_worker = calloc(1, sizeof(*test_worker));
	test_worker->cfg = cfg;
	test_auth = auth_new(test_worker);
	return 0;
}

static int
teardown_auth(void **state)
{
	auth_free(test_auth);
	config_unref(test_worker->cfg);
	free(test_worker);
	for (int i = 0; i < fake.n; i++)
		free(fake.queue[i]);
	return 0;
}

/* Send one request with this Authorization header (NULL: none). */
static void
send_auth(const char *authorization)
{
	memset(&seen, 0, sizeof(seen));
	memset(&test_hr, 0, sizeof(test_hr));
	test_hr.req = evhttp_request_new(NULL, NULL);
	test_hr.w = test_worker;
	test_hr.path = (char *)"/api/orders";
	if (authorization != NULL)
		evhttp_add_header(evhttp_request_get_input_headers(test_hr.req), "Authorization",
		    authorization);
	auth_request(test_auth, &test_hr, on_auth, &seen);
}

/* A new API key in key/id, its hash in hash (unless NULL), "ApiKey <key>" in hdr. */
static void
new_key(char *key, char *id, unsigned char *hash, char *hdr, size_t size)
{
	assert_true(auth_key_generate(key, id));
	if (hash != NULL)
		auth_key_hash(key, strlen(key), hash);
	snprintf(hdr, size, "ApiKey %s", key);
}

static void
done_request(void)
{
	evhttp_request_free(test_hr.req);
	test_hr.req = NULL;
}

/* A one-row (or empty) answer to the key lookup. */
static PGresult *
key_row(bool found, const char *creator, const unsigned char *hash, bool active)
{
	PGresAttDesc attrs[3] = {
		{ .name = (char *)"creator_id", .format = 0, .typid = 25, .typlen = -1 },
		{ .name = (char *)"key_hash", .format = 0, .typid = 17, .typlen = -1 },
		{ .name = (char *)"active", .format = 0, .typid = 16, .typlen = 1 },
	};
	PGresult *r = PQmakeEmptyPGresult(NULL, PGRES_TUPLES_OK);
	char hex[2 + 2 * AUTH_KEY_HASH_LEN + 1];

	assert_true(PQsetResultAttrs(r, 3, attrs));
	if (!found)
		return r;
	strcpy(hex, "\\x");
	for (int i = 0; i < AUTH_KEY_HASH_LEN; i++)
		snprintf(hex + 2 + 2 * i, 3, "%02x", hash[i]);
	assert_true(PQsetvalue(r, 0, 0, (char *)creator, (int)strlen(creator)));
	assert_true(PQsetvalue(r, 0, 1, hex, (int)strlen(hex)));
	assert_true(PQsetvalue(r, 0, 2, (char *)(active ? "t" : "f"), 1));
	return r;
}

/* The creator lookup's answer: one row, or none. */
static PGresult *
one_row(bool found)
{
	PGresAttDesc attr = { .name = (char *)"?column?", .format = 0, .typid = 23, .typlen = 4 };
	PGresult *r = PQmakeEmptyPGresult(NULL, PGRES_TUPLES_OK);

	assert_true(PQsetResultAttrs(r, 1, &attr));
	if (found)
		assert_true(PQsetvalue(r, 0, 0, (char *)"1", 1));
	return r;
}

/* Complete the oldest submitted batch with error or result. */
static struct pg_batch *
complete_first(const char *error, PGresult *result)
{
	struct pg_batch *b = fake.queue[0];

	assert_true(fake.n > 0);
	memmove(fake.queue, fake.queue + 1, (size_t)(fake.n - 1) * sizeof(fake.queue[0]));
	fake.n--;
	fake.error = error;
	fake.result = result;
	b->cb(b, b->arg);
	fake.error = NULL;
	fake.result = NULL;
	if (result != NULL)
		PQclear(result);
	return b;
}

static void
test_auth_missing_header(void **state)
{
	send_auth(NULL);
	assert_int_equal(seen.status, 401);
	assert_string_equal(seen.code, "unauthorized");
	assert_string_equal(seen.www, "Bearer realm=\"orderflow\"");
	assert_int_equal(seen.calls, 1);
	assert_false(seen.res.ok);
	assert_null(seen.cb_hr);
	done_request();
	send_auth("Basic dXNlcjpwYXNz");
	assert_int_equal(seen.status, 401);
	assert_string_equal(seen.www, "Bearer realm=\"orderflow\"");
	assert_non_null(strstr(seen.message, "Bearer or ApiKey"));
	done_request();
	send_auth("Bearer");
	assert_int_equal(seen.status, 401);
	assert_string_equal(seen.www, "Bearer realm=\"orderflow\", error=\"invalid_token\"");
	done_request();
	send_auth("Bearer a b");
	assert_int_equal(seen.status, 401);
	assert_non_null(strstr(seen.message, "malformed"));
	done_request();
	assert_int_equal(fake.submitted, 0);
}

/* "Bearer <token>" in hdr: a valid token for sub, expiring in ten minutes. */
static void
bearer_for(const char *sub, char *hdr, size_t size)
{
	char pl[256], *t;

	snprintf(pl, sizeof(pl), "{\"sub\":\"%s\",\"exp\":%lld,\"aud\":\"authenticated\"}",
	    sub, (long long)time(NULL) + 600);
	t = make_token(HS256, pl, SECRET);
	snprintf(hdr, size, "Bearer %s", t);
	free(t);
}

static void
test_auth_bearer(void **state)
{
	char extra[64], hdr[2048];
	char *pl, *t;

	snprintf(extra, sizeof(extra), "\"aud\":\"authenticated\",\"iat\":%lld",
	    (long long)(time(NULL) - 5));
	/* payload() is relative to NOW_S: this one is relative to the real clock. */
	pl = malloc(512);
	snprintf(pl, 512, "{\"sub\":\"%s\",\"exp\":%lld,%s}", SUB, (long long)time(NULL) + 600, extra);
	t = make_token(HS256, pl, SECRET);
	snprintf(hdr, sizeof(hdr), "Bearer %s", t);
	send_auth(hdr);
	/* The first time its subject is looked up among the creators. */
	assert_int_equal(seen.calls, 0);
	assert_int_equal(fake.n, 1);
	assert_string_equal(fake.queue[0]->stmt, "auth_creator");
	assert_string_equal(fake.queue[0]->param, SUB_LOWER);
	free(complete_first(NULL, one_row(true)));
	assert_int_equal(seen.status, 0);
	assert_int_equal(seen.calls, 1);
	assert_true(seen.res.ok);
	assert_ptr_equal(seen.cb_hr, &test_hr);
	assert_int_equal(seen.res.kind, AUTH_KIND_JWT);
	assert_string_equal(seen.res.creator_id, SUB_LOWER);
	assert_string_equal(seen.res.subject, SUB_LOWER);
	done_request();
	/* The scheme is case-insensitive. */
	snprintf(hdr, sizeof(hdr), "bearer %s", t);
	fake.submitted = 0;
	send_auth(hdr);
	assert_true(seen.res.ok);
	done_request();
	assert_int_equal(fake.submitted, 0);	/* remembered */
	free(t);
	free(pl);

	/* Signed, unexpired, right audience, but no creator: 403, and remembered. */
	bearer_for("0b9c6f1e-2d3a-4b5c-8d7e-9f0a1b2c3d4e", hdr, sizeof(hdr));
	for (int round = 0; round < 2; round++) {
		send_auth(hdr);
		if (round == 0)
			free(complete_first(NULL, one_row(false)));
		assert_int_equal(seen.status, 403);
		assert_string_equal(seen.code, "unknown_creator");
		assert_false(seen.res.ok);
		assert_null(seen.cb_hr);
		done_request();
		assert_int_equal(fake.n, 0);
	}
	/* The database away: 503, nothing remembered (the next request asks again). */
	bearer_for("1b9c6f1e-2d3a-4b5c-8d7e-9f0a1b2c3d4e", hdr, sizeof(hdr));
	send_auth(hdr);
	free(complete_first("connection lost", NULL));
	assert_int_equal(seen.status, 503);
	done_request();
	send_auth(hdr);
	assert_int_equal(fake.n, 1);
	free(complete_first(NULL, one_row(true)));
	assert_true(seen.res.ok);
	done_request();
	fake.submitted = 0;

	/* Expired against the real clock: 401 invalid_token with the reason. */
	pl = malloc(512);
	snprintf(pl, 512, "{\"sub\":\"%s\",\"exp\":%lld,\"aud\":\"authenticated\"}", SUB,
	    (long long)time(NULL) - 3600);
	t = make_token(HS256, pl, SECRET);
	snprintf(hdr, sizeof(hdr), "Bearer %s", t);
	send_auth(hdr);
	assert_int_equal(seen.status, 401);
	assert_string_equal(seen.message, "token expired");
	assert_string_equal(seen.www, "Bearer realm=\"orderflow\", error=\"invalid_token\"");
	assert_false(seen.res.ok);
	assert_null(seen.cb_hr);
	done_request();
	free(t);
	free(pl);
	assert_int_equal(fake.submitted, 0);
}

static void
test_auth_apikey(void **state)
{
	char key[AUTH_KEY_MAX_LEN + 1], id[AUTH_KEY_ID_LEN + 1], hdr[256], wrong[256];
	unsigned char hash[AUTH_KEY_HASH_LEN];

	new_key(key, id, hash, hdr, sizeof(hdr));

	/* A miss: one lookup by id, answered later. */
	send_auth(hdr);
	assert_int_equal(seen.calls, 0);
	assert_int_equal(fake.n, 1);
	assert_string_equal(fake.queue[0]->stmt, "auth_key");
	assert_string_equal(fake.queue[0]->param, id);
	free(complete_first(NULL, key_row(true, SUB_LOWER, hash, true)));
	assert_int_equal(seen.calls, 1);
	assert_true(seen.res.ok);
	assert_ptr_equal(seen.cb_hr, &test_hr);
	assert_int_equal(seen.res.kind, AUTH_KIND_APIKEY);
	assert_string_equal(seen.res.creator_id, SUB_LOWER);
	assert_string_equal(seen.res.subject, id);
	done_request();
	/* last_used_at is touched, nobody waits for it. */
	assert_int_equal(fake.n, 1);
	assert_string_equal(fake.queue[0]->stmt, "auth_touch");
	free(complete_first(NULL, NULL));
	assert_int_equal(auth_cache_count(test_auth), 1);

	/* A hit: answered at once, no query. */
	fake.submitted = 0;
	send_auth(hdr);
	assert_int_equal(seen.calls, 1);
	assert_true(seen.res.ok);
	done_request();
	/* The same id with another secret: refused from the cache, still no query. */
	snprintf(wrong, sizeof(wrong), "%s", hdr);
	wrong[strlen(wrong) - 1] = wrong[strlen(wrong) - 1] == 'A' ? 'B' : 'A';
	send_auth(wrong);
	assert_int_equal(seen.status, 401);
	assert_string_equal(seen.message, "invalid API key");
	assert_string_equal(seen.www, "Bearer realm=\"orderflow\", error=\"invalid_token\"");
	assert_false(seen.res.ok);
	done_request();
	assert_int_equal(fake.submitted, 0);

	/* Malformed keys never reach the database. */
	send_auth("ApiKey ofk_nothex_0123456789012345678901234567890123");
	assert_int_equal(seen.status, 401);
	assert_string_equal(seen.message, "malformed API key");
	done_request();
	assert_int_equal(fake.submitted, 0);
}

static void
test_auth_apikey_refusals(void **state)
{
	char key[AUTH_KEY_MAX_LEN + 1], id[AUTH_KEY_ID_LEN + 1], hdr[256];
	unsigned char hash[AUTH_KEY_HASH_LEN];

	/* Revoked: refused, and remembered as revoked. */
	new_key(key, id, hash, hdr, sizeof(hdr));
	send_auth(hdr);
	free(complete_first(NULL, key_row(true, SUB_LOWER, hash, false)));
	assert_int_equal(seen.status, 401);
	assert_string_equal(seen.message, "API key revoked");
	done_request();
	assert_int_equal(fake.n, 0);	/* no touch for a revoked key */
	send_auth(hdr);
	assert_string_equal(seen.message, "API key revoked");
	done_request();
	assert_int_equal(fake.n, 0);

	/* Unknown id: refused, and the miss is remembered too. */
	new_key(key, id, NULL, hdr, sizeof(hdr));
	send_auth(hdr);
	free(complete_first(NULL, key_row(false, NULL, NULL, false)));
	assert_int_equal(seen.status, 401);
	assert_string_equal(seen.message, "invalid API key");
	done_request();
	send_auth(hdr);
	assert_int_equal(seen.status, 401);
	done_request();
	assert_int_equal(fake.n, 0);

	/* The database refuses the query, or fails it: 503 with Retry-After. */
	new_key(key, id, NULL, hdr, sizeof(hdr));
	fake.refuse = PG_EDOWN;
	send_auth(hdr);
	assert_int_equal(seen.status, 503);
	assert_string_equal(seen.retry_after, "1");
	assert_int_equal(seen.calls, 1);
	assert_false(seen.res.ok);
	done_request();
	fake.refuse = PG_OK;
	send_auth(hdr);
	free(complete_first("connection lost", NULL));
	assert_int_equal(seen.status, 503);
	assert_string_equal(seen.code, "unavailable");
	assert_int_equal(seen.calls, 1);
	done_request();
	/* Nothing was cached from a failure: the next request asks again. */
	send_auth(hdr);
	assert_int_equal(fake.n, 1);
	free(complete_first(NULL, key_row(false, NULL, NULL, false)));
	done_request();
}

static void
test_auth_cache_ttl_and_bound(void **state)
{
	char key[AUTH_KEY_MAX_LEN + 1], id[AUTH_KEY_ID_LEN + 1], hdr[256];
	unsigned char hash[AUTH_KEY_HASH_LEN];
	struct timespec ts = { 0, 20 * 1000 * 1000 };

	new_key(key, id, hash, hdr, sizeof(hdr));

	/* api_key_ttl = 0: every request asks the database. */
	test_worker->cfg->auth.api_key_ttl = 0;
	for (int i = 0; i < 2; i++) {
		send_auth(hdr);
		assert_int_equal(fake.n, 1);
		free(complete_first(NULL, key_row(true, SUB_LOWER, hash, true)));
		assert_true(seen.res.ok);
		done_request();
		free(complete_first(NULL, NULL));	/* the touch */
	}
	assert_int_equal(auth_cache_count(test_auth), 0);

	/* A short ttl: remembered, then asked again once it has passed. */
	test_worker->cfg->auth.api_key_ttl = 10;
	send_auth(hdr);
	free(complete_first(NULL, key_row(true, SUB_LOWER, hash, true)));
	done_request();
	free(complete_first(NULL, NULL));
	send_auth(hdr);
	assert_int_equal(fake.n, 0);
	done_request();
	nanosleep(&ts, NULL);
	send_auth(hdr);
	assert_int_equal(fake.n, 1);
	free(complete_first(NULL, key_row(true, SUB_LOWER, hash, false)));
	assert_string_equal(seen.message, "API key revoked");
	done_request();

	/* Bounded: the oldest ids go first. */
	test_worker->cfg->auth.api_key_ttl = 3600000;
	for (int i = 0; i < AUTH_CACHE_MAX + 10; i++) {
		new_key(key, id, NULL, hdr, sizeof(hdr));
		send_auth(hdr);
		free(complete_first(NULL, key_row(false, NULL, NULL, false)));
		done_request();
	}
	assert_int_equal(auth_cache_count(test_auth), AUTH_CACHE_MAX);
}

static void
test_auth_free_with_lookup_out(void **state)
{
	char key[AUTH_KEY_MAX_LEN + 1], id[AUTH_KEY_ID_LEN + 1], hdr[256];
	unsigned char hash[AUTH_KEY_HASH_LEN];

	new_key(key, id, hash, hdr, sizeof(hdr));
	send_auth(hdr);
	assert_int_equal(fake.n, 1);
	auth_free(test_auth);
	test_auth = NULL;
	/* The pool fails what is left at shutdown: the request is still answered. */
	free(complete_first("shutting down", NULL));
	assert_int_equal(seen.status, 503);
	assert_int_equal(seen.calls, 1);
	done_request();
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_jwt_valid),
		cmocka_unit_test(test_jwt_wrong_key),
		cmocka_unit_test(test_jwt_alg_none),
		cmocka_unit_test(test_jwt_alg_others),
		cmocka_unit_test(test_jwt_expiry),
		cmocka_unit_test(test_jwt_nbf_iat),
		cmocka_unit_test(test_jwt_audience),
		cmocka_unit_test(test_jwt_subject),
		cmocka_unit_test(test_jwt_malformed),
		cmocka_unit_test(test_jwt_supabase),
		cmocka_unit_test(test_b64url),
		cmocka_unit_test(test_key_format),
		cmocka_unit_test_setup_teardown(test_auth_missing_header, setup_auth, teardown_auth),
		cmocka_unit_test_setup_teardown(test_auth_bearer, setup_auth, teardown_auth),
		cmocka_unit_test_setup_teardown(test_auth_apikey, setup_auth, teardown_auth),
		cmocka_unit_test_setup_teardown(test_auth_apikey_refusals, setup_auth, teardown_auth),
		cmocka_unit_test_setup_teardown(test_auth_cache_ttl_and_bound, setup_auth,
		    teardown_auth),
		cmocka_unit_test_setup_teardown(test_auth_free_with_lookup_out, setup_auth,
		    teardown_auth),
	};

	cmocka_set_message_output(CM_OUTPUT_TAP);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
