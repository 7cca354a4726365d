/*
 * jwt: HS256 bearer tokens, checked strictly and in a fixed order.
 *
 * The order matters: the header is checked before anything else is
 * trusted, the signature before the payload is even parsed, and the
 * claims last.  Nothing here allocates more than twice the token's length.
 */
#include "config.h"

#include <jansson.h>
#include <math.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "orderflow/jwt.h"

/* Length of an HMAC-SHA256, and of its base64url form. */
#define JWT_MAC_LEN 32
#define JWT_MAC_B64_LEN 43
/* Latest NumericDate accepted (9999-12-31T23:59:59Z), so ms never overflow. */
#define JWT_DATE_MAX 253402300799.0

static const char jwt_b64_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/* The value of one base64url character, or -1. */
static int
jwt_b64_value(unsigned char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '-')
		return 62;
	if (c == '_')
		return 63;
	return -1;
}

size_t
jwt_b64url_encode(const void *in, size_t len, char *out)
{
	const unsigned char *p = in;
	uint32_t acc = 0;
	size_t o = 0;
	int bits = 0;

	for (size_t i = 0; i < len; i++) {
		acc = (acc << 8) | p[i];
		bits += 8;
		while (bits >= 6) {
			bits -= 6;
			out[o++] = jwt_b64_alphabet[(acc >> bits) & 0x3f];
		}
		acc &= (1u << bits) - 1;
	}
	if (bits > 0)
		out[o++] = jwt_b64_alphabet[(acc << (6 - bits)) & 0x3f];
	out[o] = '\0';
	return o;
}

long
jwt_b64url_decode(const char *in, size_t len, unsigned char *out)
{
	uint32_t acc = 0;
	size_t o = 0;
	int bits = 0;

	/* One character left over carries only 6 bits: never a whole byte. */
	if (len % 4 == 1)
		return -1;
	for (size_t i = 0; i < len; i++) {
		int v = jwt_b64_value((unsigned char)in[i]);

		if (v < 0)
			return -1;
		acc = (acc << 6) | (uint32_t)v;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			out[o++] = (unsigned char)(acc >> bits);
		}
		acc &= (1u << bits) - 1;
	}
	/* Canonical form only: the bits that pad the last character are zero. */
	return acc != 0 ? -1 : (long)o;
}

bool
jwt_uuid_parse(const char *s, size_t len, char out[JWT_UUID_LEN + 1])
{
	if (len != JWT_UUID_LEN)
		return false;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];

		if (i == 8 || i == 13 || i == 18 || i == 23) {
			if (c != '-')
				return false;
		} else if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') ||
		    (c >= 'A' && c <= 'F'))) {
			return false;
		}
		out[i] = (char)(c >= 'A' && c <= 'F' ? c - 'A' + 'a' : c);
	}
	out[len] = '\0';
	return true;
}

const char *
jwt_status_name(enum jwt_status st)
{
	static const char *const names[] = {
		[JWT_OK] = "ok", [JWT_DISABLED] = "disabled", [JWT_MALFORMED] = "malformed",
		[JWT_ALG] = "algorithm", [JWT_SIGNATURE] = "signature", [JWT_EXPIRED] = "expired",
		[JWT_NOT_YET_VALID] = "not_yet_valid", [JWT_AUDIENCE] = "audience",
		[JWT_CLAIMS] = "claims",
	};

	return (size_t)st < NELEM(names) && names[st] != NULL ? names[st] : "?";
}

/* Decode one part into buf and parse it as a JSON object, or NULL. */
static json_t *
jwt_json_part(const char *part, size_t len, unsigned char *buf)
{
	long n = jwt_b64url_decode(part, len, buf);
	json_t *doc;

	if (n <= 0)
		return NULL;
	doc = json_loadb((const char *)buf, (size_t)n, JSON_REJECT_DUPLICATES, NULL);
	if (doc != NULL && !json_is_object(doc)) {
		json_decref(doc);
		doc = NULL;
	}
	return doc;
}

/* alg exactly HS256, typ JWT when present, no crit; NULL when acceptable. */
static const char *
jwt_check_header(json_t *h)
{
	json_t *alg = json_object_get(h, "alg"), *typ = json_object_get(h, "typ");

	if (alg == NULL)
		return "algorithm not allowed: the token header has no alg";
	if (!json_is_string(alg) || strcmp(json_string_value(alg), "HS256") != 0)
		return "algorithm not allowed: only HS256 is accepted";
	if (typ != NULL && (!json_is_string(typ) || strcasecmp(json_string_value(typ), "JWT") != 0))
		return "token type not allowed: typ must be JWT";
	if (json_object_get(h, "crit") != NULL)
		return "critical header parameters are not supported";
	return NULL;
}

/*
 * A NumericDate claim in ms: 1 when present and valid, 0 when absent,
 * -1 when not a number in range.
 */
static int
jwt_date(json_t *payload, const char *name, double *ms)
{
	json_t *v = json_object_get(payload, name);
	double d;

	if (v == NULL)
		return 0;
	if (!json_is_number(v))
		return -1;
	d = json_number_value(v);
	if (!isfinite(d) || d < 0 || d > JWT_DATE_MAX)
		return -1;
	*ms = d * 1000.0;
	return 1;
}

/* aud is the audience, or an array that holds it. */
static bool
jwt_audience_ok(json_t *aud, const char *audience)
{
	size_t i;
	json_t *v;

	if (json_is_string(aud))
		return strcmp(json_string_value(aud), audience) == 0;
	if (!json_is_array(aud))
		return false;
	json_array_foreach(aud, i, v)
		if (json_is_string(v) && strcmp(json_string_value(v), audience) == 0)
			return true;
	return false;
}

/* The claims, once the signature is known good. */
static enum jwt_status
jwt_check_claims(json_t *p, const char *audience, int64_t leeway_ms, int64_t now_ms,
    char creator_id[JWT_UUID_LEN + 1], const char **why)
{
	double now = (double)now_ms, leeway = (double)leeway_ms, exp, nbf, iat;
	json_t *sub = json_object_get(p, "sub");
	int r;

	if ((r = jwt_date(p, "exp", &exp)) <= 0) {
		*why = r == 0 ? "token has no exp claim" : "token exp claim is not a valid date";
		return JWT_CLAIMS;
	}
	if (now >= exp + leeway) {
		*why = "token expired";
		return JWT_EXPIRED;
	}
	if ((r = jwt_date(p, "nbf", &nbf)) < 0) {
		*why = "token nbf claim is not a valid date";
		return JWT_CLAIMS;
	}
	if (r > 0 && nbf > now + leeway) {
		*why = "token not yet valid";
		return JWT_NOT_YET_VALID;
	}
	if ((r = jwt_date(p, "iat", &iat)) < 0) {
		*why = "token iat claim is not a valid date";
		return JWT_CLAIMS;
	}
	if (r > 0 && iat > now + leeway) {
		*why = "token issued in the future";
		return JWT_NOT_YET_VALID;
	}
	if (audience != NULL && audience[0] != '\0' &&
	    !jwt_audience_ok(json_object_get(p, "aud"), audience)) {
		*why = "token audience mismatch";
		return JWT_AUDIENCE;
	}
	if (sub == NULL) {
		*why = "token has no sub claim";
		return JWT_CLAIMS;
	}
	if (!json_is_string(sub) ||
	    !jwt_uuid_parse(json_string_value(sub), json_string_length(sub), creator_id)) {
		creator_id[0] = '\0';
		*why = "token sub claim is not a UUID";
		return JWT_CLAIMS;
	}
	*why = "ok";
	return JWT_OK;
}

enum jwt_status
jwt_verify(const char *token, size_t len, const char *secret, const char *audience,
    int64_t leeway_ms, int64_t now_ms, char creator_id[JWT_UUID_LEN + 1], const char **why)
{
	const char *dot1, *dot2;
	unsigned char *buf, mac[EVP_MAX_MD_SIZE], sig[JWT_MAC_LEN];
	unsigned int maclen = 0;
	size_t hlen, plen, slen;
	enum jwt_status st;
	json_t *doc;
	long n;

	creator_id[0] = '\0';
	if (secret == NULL || secret[0] == '\0') {
		*why = "JWT authentication is disabled";
		return JWT_DISABLED;
	}
	if (len == 0 || len > JWT_MAX_LEN) {
		*why = len == 0 ? "empty token" : "token too long";
		return JWT_MALFORMED;
	}
	dot1 = memchr(token, '.', len);
	dot2 = dot1 != NULL ? memchr(dot1 + 1, '.', len - (size_t)(dot1 + 1 - token)) : NULL;
	if (dot2 == NULL || memchr(dot2 + 1, '.', len - (size_t)(dot2 + 1 - token)) != NULL) {
		*why = "malformed token: not three dot-separated parts";
		return JWT_MALFORMED;
	}
	hlen = (size_t)(dot1 - token);
	plen = (size_t)(dot2 - dot1 - 1);
	slen = len - (size_t)(dot2 + 1 - token);
	buf = xmalloc(len);

	/* The header first: nothing else is looked at under an algorithm we refuse. */
	if ((doc = jwt_json_part(token, hlen, buf)) == NULL) {
		free(buf);
		*why = "malformed token header";
		return JWT_MALFORMED;
	}
	*why = jwt_check_header(doc);
	json_decref(doc);
	if (*why != NULL) {
		free(buf);
		return JWT_ALG;
	}

	/* Then the signature, before the payload is parsed. */
	n = slen == JWT_MAC_B64_LEN ? jwt_b64url_decode(dot2 + 1, slen, sig) : -1;
	if (n != JWT_MAC_LEN || HMAC(EVP_sha256(), secret, (int)strlen(secret),
	    (const unsigned char *)token, hlen + 1 + plen, mac, &maclen) == NULL ||
	    maclen != JWT_MAC_LEN || CRYPTO_memcmp(mac, sig, JWT_MAC_LEN) != 0) {
		free(buf);
		*why = "bad signature";
		return JWT_SIGNATURE;
	}

	if ((doc = jwt_json_part(dot1 + 1, plen, buf)) == NULL) {
		free(buf);
		*why = "malformed token payload";
		return JWT_MALFORMED;
	}
	st = jwt_check_claims(doc, audience, leeway_ms, now_ms, creator_id, why);
	json_decref(doc);
	free(buf);
	return st;
}
