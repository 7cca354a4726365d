/*
 * ttauth: authorization states, links and TikTok's grants, checked.
 */
#include "config.h"

#include <event2/http.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "orderflow/jwt.h"
#include "orderflow/ttauth.h"
#include "orderflow/util.h"

#define TTAUTH_PAYLOAD 40	/* creator 16, expiry 8, nonce 16 */
#define TTAUTH_MAC 16		/* HMAC-SHA256, truncated */
#define TTAUTH_RAW (TTAUTH_PAYLOAD + TTAUTH_MAC)

/* A key of its own, so a state's MAC can never stand for a request signature. */
static void
ttauth_key(const char *app_secret, unsigned char key[32])
{
	static const char label[] = "orderflow oauth state v1";
	unsigned int len = 32;

	HMAC(EVP_sha256(), app_secret, (int)strlen(app_secret), (const unsigned char *)label,
	    sizeof(label) - 1, key, &len);
}

static void
ttauth_mac(const char *app_secret, const unsigned char *payload, unsigned char mac[TTAUTH_MAC])
{
	unsigned char key[32], full[32];
	unsigned int len = sizeof(full);

	ttauth_key(app_secret, key);
	HMAC(EVP_sha256(), key, sizeof(key), payload, TTAUTH_PAYLOAD, full, &len);
	memcpy(mac, full, TTAUTH_MAC);
	OPENSSL_cleanse(key, sizeof(key));
}

static int
ttauth_nibble(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* A UUID in text (8-4-4-4-12 hex digits) as its 16 bytes; false when it is not one. */
static bool
ttauth_uuid_bytes(const char *uuid, unsigned char out[16])
{
	size_t j = 0;

	if (strlen(uuid) != 36)
		return false;
	for (size_t i = 0; i < 36; i += 2) {
		int hi, lo;

		if (i == 8 || i == 13 || i == 18 || i == 23) {
			if (uuid[i] != '-')
				return false;
			i--;		/* the dash is one character, not two */
			continue;
		}
		if ((hi = ttauth_nibble(uuid[i])) < 0 || (lo = ttauth_nibble(uuid[i + 1])) < 0)
			return false;
		out[j++] = (unsigned char)(hi << 4 | lo);
	}
	return j == 16;
}

static void
ttauth_hex(const unsigned char *in, size_t n, char *out)
{
	static const char digits[] = "0123456789abcdef";

	for (size_t i = 0; i < n; i++) {
		out[2 * i] = digits[in[i] >> 4];
		out[2 * i + 1] = digits[in[i] & 15];
	}
	out[2 * n] = '\0';
}

bool
ttauth_state_make(const char *app_secret, const char *creator, int64_t expires,
    char state[TTAUTH_STATE_LEN + 1], char nonce[TTAUTH_NONCE_HEX + 1])
{
	unsigned char raw[TTAUTH_RAW];
	char enc[4 * ((TTAUTH_RAW + 2) / 3) + 1];

	if (!ttauth_uuid_bytes(creator, raw))
		return false;
	for (int i = 0; i < 8; i++)
		raw[16 + i] = (unsigned char)((uint64_t)expires >> (56 - 8 * i));
	if (RAND_bytes(raw + 24, 16) != 1)
		return false;
	ttauth_mac(app_secret, raw, raw + TTAUTH_PAYLOAD);
	if (jwt_b64url_encode(raw, sizeof(raw), enc) != TTAUTH_STATE_LEN)
		return false;
	memcpy(state, enc, TTAUTH_STATE_LEN + 1);
	ttauth_hex(raw + 24, 16, nonce);
	return true;
}

enum ttauth_state_err
ttauth_state_check(const char *app_secret, const char *state, int64_t now, char creator[37],
    char nonce[TTAUTH_NONCE_HEX + 1])
{
	unsigned char raw[TTAUTH_RAW + 3], mac[TTAUTH_MAC];
	char hex[33];
	uint64_t expires = 0;

	if (state == NULL || strlen(state) != TTAUTH_STATE_LEN ||
	    jwt_b64url_decode(state, TTAUTH_STATE_LEN, raw) != TTAUTH_RAW)
		return TTAUTH_STATE_MALFORMED;
	ttauth_mac(app_secret, raw, mac);
	if (CRYPTO_memcmp(mac, raw + TTAUTH_PAYLOAD, TTAUTH_MAC) != 0)
		return TTAUTH_STATE_FORGED;
	for (int i = 0; i < 8; i++)
		expires = expires << 8 | raw[16 + i];
	if ((int64_t)expires <= now)
		return TTAUTH_STATE_EXPIRED;
	ttauth_hex(raw, 16, hex);
	snprintf(creator, 37, "%.8s-%.4s-%.4s-%.4s-%.12s", hex, hex + 8, hex + 12, hex + 16,
	    hex + 20);
	ttauth_hex(raw + 24, 16, nonce);
	return TTAUTH_STATE_OK;
}

char *
ttauth_authorize_url(const char *base, const char *service_id, const char *state)
{
	char *sid = evhttp_uriencode(service_id, -1, 0);
	char *st = evhttp_uriencode(state, -1, 0);
	char *url = xasprintf("%s?service_id=%s&state=%s", base, sid, st);

	free(sid);
	free(st);
	return url;
}

bool
ttauth_token_ok(const char *s, size_t max)
{
	size_t n = s != NULL ? strlen(s) : 0;

	if (n == 0 || n > max)
		return false;
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)s[i] <= 0x20 || (unsigned char)s[i] >= 0x7f)
			return false;
	return true;
}

/* A name from TikTok for display: at most 255 characters' worth, no control bytes. */
static const char *
ttauth_name(const json_t *v)
{
	const char *s = json_string_value(v);

	if (s == NULL || s[0] == '\0' || strlen(s) > 1020)
		return NULL;
	for (const char *c = s; *c != '\0'; c++)
		if ((unsigned char)*c < 0x20 || *c == 0x7f)
			return NULL;
	return s;
}

/* An expiry: a Unix timestamp, or (below ten years' worth) seconds from now. */
static bool
ttauth_expiry(const json_t *v, int64_t now, int64_t *out)
{
	json_int_t n;

	if (!json_is_integer(v) || (n = json_integer_value(v)) <= 0 || n > 253402300799)
		return false;
	*out = n < 315360000 ? now + (int64_t)n : (int64_t)n;
	return *out > now;
}

bool
ttauth_grant_parse(const json_t *data, int64_t now, bool need_open_id, struct ttauth_grant *g,
    const char **why)
{
	memset(g, 0, sizeof(*g));
	if (!json_is_object(data)) {
		*why = "the answer has no data object";
		return false;
	}
	g->access_token = json_string_value(json_object_get(data, "access_token"));
	g->refresh_token = json_string_value(json_object_get(data, "refresh_token"));
	g->open_id = json_string_value(json_object_get(data, "open_id"));
	g->seller_name = ttauth_name(json_object_get(data, "seller_name"));
	if (!ttauth_token_ok(g->access_token, TTAUTH_TOKEN_MAX))
		*why = "access_token is missing or unusable";
	else if (!ttauth_token_ok(g->refresh_token, TTAUTH_TOKEN_MAX))
		*why = "refresh_token is missing or unusable";
	else if (!ttauth_expiry(json_object_get(data, "access_token_expire_in"), now,
	    &g->access_expires))
		*why = "access_token_expire_in is missing or already past";
	else if (!ttauth_expiry(json_object_get(data, "refresh_token_expire_in"), now,
	    &g->refresh_expires))
		*why = "refresh_token_expire_in is missing or already past";
	else if (g->open_id != NULL && !ttauth_token_ok(g->open_id, 256))
		*why = "open_id is unusable";
	else if (need_open_id && g->open_id == NULL)
		*why = "open_id is missing";
	else
		return true;
	return false;
}

/* One shop of Get Authorized Shops, checked; NULL when unusable. */
static json_t *
ttauth_shop(const json_t *s)
{
	const char *id = json_string_value(json_object_get(s, "id"));
	const char *cipher = json_string_value(json_object_get(s, "cipher"));
	const char *region = json_string_value(json_object_get(s, "region"));
	const char *name = ttauth_name(json_object_get(s, "name"));

	if (id == NULL || id[0] == '\0' || strlen(id) > 64 || strspn(id, "0123456789") != strlen(id))
		return NULL;
	if (!ttauth_token_ok(cipher, 256))
		return NULL;
	if (region != NULL && (strlen(region) > 16 ||
	    strspn(region, "ABCDEFGHIJKLMNOPQRSTUVWXYZ") != strlen(region)))
		region = NULL;
	return json_pack("{s:s, s:s?, s:s?, s:s}", "id", id, "name", name, "region", region,
	    "cipher", cipher);
}

json_t *
ttauth_shops_parse(const json_t *data, const char **why)
{
	const json_t *list = json_object_get(data, "shops");
	json_t *out, *one;
	size_t i;
	const json_t *s;

	if (!json_is_array(list) || json_array_size(list) == 0) {
		*why = "the authorization grants no shop";
		return NULL;
	}
	if (json_array_size(list) > TTAUTH_SHOPS_MAX) {
		*why = "the authorization names more than 100 shops";
		return NULL;
	}
	out = json_array();
	json_array_foreach(list, i, s) {
		if ((one = ttauth_shop(s)) == NULL) {
			json_decref(out);
			*why = "a shop has no usable id or cipher";
			return NULL;
		}
		json_array_append_new(out, one);
	}
	return out;
}
