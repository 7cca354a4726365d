/*
 * ttsign: TikTok Shop's two HMAC-SHA256 signatures, and the carrier's.
 *
 *   webhooks:  Authorization = hex(HMAC(app_secret, app_key || raw body))
 *   API calls: sign = hex(HMAC(app_secret, secret + path + sorted "keyvalue"
 *              pairs of the query except sign and access_token + body + secret))
 *   carrier webhooks (EasyPost): X-Hmac-Signature = "hmac-sha256-hex=" +
 *              hex(HMAC(webhook secret, raw body))
 *
 * Pure functions over bytes; called by webhook (verify), the TikTok API
 * client (sign), cwebhook (the carrier's), and the unit tests.
 */
#ifndef ORDERFLOW_TTSIGN_H
#define ORDERFLOW_TTSIGN_H

#include <stdbool.h>
#include <stddef.h>

/* Hex digest length of HMAC-SHA256, without the terminating NUL. */
#define TTSIGN_HEX_LEN 64

/* One query parameter of an API request. */
struct ttsign_param {
	const char	*key;
	const char	*value;
};

/* hex(HMAC(secret, app_key || body)) into out (TTSIGN_HEX_LEN + 1 bytes). */
void ttsign_webhook(const char *app_key, const char *secret, const void *body, size_t len,
    char *out);

/*
 * Whether header is the webhook signature of body, compared in constant
 * time.  Case-insensitive hex is accepted; anything else is false.
 */
bool ttsign_webhook_verify(const char *app_key, const char *secret, const void *body,
    size_t len, const char *header);

/* The API request sign over path, params (any order) and body, into out. */
/*
 * hex (64 hex digits, any case) is HMAC-SHA256(secret, body): the carrier's
 * webhook signature (EasyPost's X-Hmac-Signature), compared in constant time.
 */
bool ttsign_body_verify(const char *secret, const void *body, size_t len, const char *hex);
void ttsign_request(const char *secret, const char *path, const struct ttsign_param *params,
    size_t nparams, const void *body, size_t len, char *out);

#endif
