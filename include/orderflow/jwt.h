/*
 * jwt: verification of the dashboard's bearer tokens (JWT, HS256 only).
 *
 * Owns the rules a token must meet: compact JWS of three base64url parts
 * (no padding, strictly decoded), a header that is a JSON object with alg
 * exactly "HS256", typ "JWT" if present and no crit, an HMAC-SHA256
 * signature compared in constant time, and a payload whose exp (required),
 * nbf and iat hold against the clock with the configured leeway, whose aud
 * matches when an audience is configured, and whose sub is the creator's
 * UUID.  Supabase Auth tokens (aud "authenticated", role, email, ...) pass.
 *
 * Pure functions over bytes: no I/O, no clock of their own, thread-safe.
 * Called by auth (requests) and by the unit tests.
 */
#ifndef ORDERFLOW_JWT_H
#define ORDERFLOW_JWT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "orderflow/util.h"

/* Longest token accepted, in bytes. */
#define JWT_MAX_LEN 8192
/* Length of a UUID in text, without the terminating NUL. */
#define JWT_UUID_LEN 36

/* Why a token was refused; each value has its own message. */
enum jwt_status {
	JWT_OK,			/* valid: creator_id is set */
	JWT_DISABLED,		/* no secret configured: every token is refused */
	JWT_MALFORMED,		/* not three base64url parts of JSON objects, or too long */
	JWT_ALG,		/* alg is not HS256, typ is not JWT, or crit is present */
	JWT_SIGNATURE,		/* the signature does not match */
	JWT_EXPIRED,		/* exp has passed, leeway included */
	JWT_NOT_YET_VALID,	/* nbf or iat is in the future, leeway included */
	JWT_AUDIENCE,		/* aud does not name the configured audience */
	JWT_CLAIMS,		/* exp or sub missing, or a claim of the wrong type */
};

/*
 * Verify token (len bytes, not NUL-terminated) signed with secret at wall
 * time now_ms.  audience "" or NULL: aud is not checked.  On JWT_OK the
 * token's sub, lower-cased, is in creator_id; otherwise creator_id is ""
 * and *why says what was wrong in words fit for a client ("token expired").
 */
enum jwt_status jwt_verify(const char *token, size_t len, const char *secret,
    const char *audience, int64_t leeway_ms, int64_t now_ms,
    char creator_id[JWT_UUID_LEN + 1], const char **why) MUSTCHECK;

/* Short name of a status ("expired"), for logs. */
const char *jwt_status_name(enum jwt_status st);

/* True when s (len bytes) is a UUID in text; its lower-case form goes to out. */
bool jwt_uuid_parse(const char *s, size_t len, char out[JWT_UUID_LEN + 1]);

/* base64url without padding; out must hold 4 * ceil(len / 3) + 1 bytes. Returns the length. */
size_t jwt_b64url_encode(const void *in, size_t len, char *out);
/*
 * Strict base64url decoding: no padding, no whitespace, unused trailing
 * bits zero.  out must hold len * 3 / 4 bytes.  Returns the decoded length,
 * or -1 when in is not canonical base64url.
 */
long jwt_b64url_decode(const char *in, size_t len, unsigned char *out);

#endif
