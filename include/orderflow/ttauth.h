/*
 * ttauth: the pure parts of TikTok Shop's authorization flow.
 *
 * Owns the `state` of an authorization link (creator, expiry and a nonce,
 * with an HMAC under a key derived from the app secret, so a forged or
 * altered state is refused before any database read), the link itself,
 * and the checks on what TikTok's token endpoints and Get Authorized Shops
 * answer.  No I/O: called by connect (the link and the callback) and tok
 * (renewals); unit-tested in tests/unit/test_ttauth.c.
 */
#ifndef ORDERFLOW_TTAUTH_H
#define ORDERFLOW_TTAUTH_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

/* base64url of 16 (creator) + 8 (expiry) + 16 (nonce) + 16 (MAC) bytes. */
#define TTAUTH_STATE_LEN 75
/* The nonce in hex: the oauth_states key. */
#define TTAUTH_NONCE_HEX 32
/* Longest token, code or cipher taken from TikTok. */
#define TTAUTH_TOKEN_MAX 2048
/* Most shops one authorization may name. */
#define TTAUTH_SHOPS_MAX 100

enum ttauth_state_err {
	TTAUTH_STATE_OK,
	TTAUTH_STATE_MALFORMED,	/* not a state this daemon makes */
	TTAUTH_STATE_FORGED,	/* the MAC does not match */
	TTAUTH_STATE_EXPIRED,
};

/*
 * A new state for creator (a UUID in text) valid until expires (Unix
 * seconds); false when creator is not a UUID or the random generator failed.
 */
bool ttauth_state_make(const char *app_secret, const char *creator, int64_t expires,
    char state[TTAUTH_STATE_LEN + 1], char nonce[TTAUTH_NONCE_HEX + 1]);
/* Check a state at now (Unix seconds); on OK, creator and nonce are filled in. */
enum ttauth_state_err ttauth_state_check(const char *app_secret, const char *state, int64_t now,
    char creator[37], char nonce[TTAUTH_NONCE_HEX + 1]);

/* The authorization page's URL with service_id and state (caller frees). */
char *ttauth_authorize_url(const char *base, const char *service_id, const char *state);

/* What a token endpoint granted. */
struct ttauth_grant {
	const char	*access_token;	/* borrowed from the JSON */
	const char	*refresh_token;
	const char	*open_id;	/* NULL when absent (a renewal need not say) */
	const char	*seller_name;	/* NULL when absent or unusable */
	int64_t		access_expires;	/* Unix seconds */
	int64_t		refresh_expires;
};

/*
 * Check the data of /api/v2/token/get or /refresh at now (Unix seconds).
 * TikTok's *_expire_in are Unix timestamps (its documentation's example is
 * 1660556783); a small number is taken as seconds from now, which some
 * clients report.  False and *why when something is missing or unusable.
 */
bool ttauth_grant_parse(const json_t *data, int64_t now, bool need_open_id,
    struct ttauth_grant *g, const char **why);

/*
 * Get Authorized Shops' data as [{id, name, region, cipher}], each field
 * checked (id digits, cipher printable ASCII, name UTF-8 or null); NULL
 * and *why when the list is missing, empty, too long or has a bad entry.
 */
json_t *ttauth_shops_parse(const json_t *data, const char **why);

/* Printable ASCII without spaces, 1..max bytes: a token, code or cipher. */
bool ttauth_token_ok(const char *s, size_t max);

#endif
