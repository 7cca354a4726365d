/*
 * ttsign: HMAC-SHA256 signatures of TikTok Shop webhooks and API requests.
 */
#include "config.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "orderflow/ttsign.h"
#include "orderflow/util.h"

/* The message is fed in pieces, so nothing is copied to sign a large body. */
struct ttsign_piece {
	const void	*data;
	size_t		len;
};

static void
ttsign_hmac_hex(const char *secret, const struct ttsign_piece *pieces, size_t n, char *out)
{
	static const char hex[] = "0123456789abcdef";
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;
	EVP_MAC *mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
	EVP_MAC_CTX *ctx = mac != NULL ? EVP_MAC_CTX_new(mac) : NULL;
	OSSL_PARAM params[] = {
		OSSL_PARAM_construct_utf8_string("digest", (char *)"SHA256", 0),
		OSSL_PARAM_construct_end(),
	};
	size_t outl = 0;

	if (ctx == NULL || !EVP_MAC_init(ctx, (const unsigned char *)secret, strlen(secret), params))
		abort();	/* only fails without SHA-256 or memory */
	for (size_t i = 0; i < n; i++)
		EVP_MAC_update(ctx, pieces[i].data, pieces[i].len);
	EVP_MAC_final(ctx, md, &outl, sizeof(md));
	mdlen = (unsigned int)outl;
	EVP_MAC_CTX_free(ctx);
	EVP_MAC_free(mac);
	for (unsigned int i = 0; i < mdlen; i++) {
		out[2 * i] = hex[md[i] >> 4];
		out[2 * i + 1] = hex[md[i] & 0xf];
	}
	out[2 * mdlen] = '\0';
}

void
ttsign_webhook(const char *app_key, const char *secret, const void *body, size_t len, char *out)
{
	struct ttsign_piece pieces[] = { { app_key, strlen(app_key) }, { body, len } };

	ttsign_hmac_hex(secret, pieces, NELEM(pieces), out);
}

/* header (hex, any case) equals want (lowercase hex), in constant time. */
static bool
ttsign_hex_match(const char *want, const char *header)
{
	char got[TTSIGN_HEX_LEN + 1];
	size_t n;

	if (header == NULL)
		return false;
	/* A field value's surrounding whitespace is not part of it (RFC 9110 section 5.5). */
	header += strspn(header, " \t");
	for (n = strlen(header); n > 0 && (header[n - 1] == ' ' || header[n - 1] == '\t'); n--)
		;
	if (n != TTSIGN_HEX_LEN)
		return false;
	for (size_t i = 0; i < TTSIGN_HEX_LEN; i++) {
		char c = header[i];

		if (c >= 'A' && c <= 'F')
			c = (char)(c - 'A' + 'a');
		else if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
			return false;
		got[i] = c;
	}
	got[TTSIGN_HEX_LEN] = '\0';
	return CRYPTO_memcmp(want, got, TTSIGN_HEX_LEN) == 0;
}

bool
ttsign_webhook_verify(const char *app_key, const char *secret, const void *body, size_t len,
    const char *header)
{
	char want[TTSIGN_HEX_LEN + 1];

	ttsign_webhook(app_key, secret, body, len, want);
	return ttsign_hex_match(want, header);
}

bool
ttsign_body_verify(const char *secret, const void *body, size_t len, const char *hex)
{
	struct ttsign_piece pieces[] = { { body, len } };
	char want[TTSIGN_HEX_LEN + 1];

	ttsign_hmac_hex(secret, pieces, NELEM(pieces), want);
	return ttsign_hex_match(want, hex);
}

static int
ttsign_param_cmp(const void *a, const void *b)
{
	return strcmp(((const struct ttsign_param *)a)->key, ((const struct ttsign_param *)b)->key);
}

void
ttsign_request(const char *secret, const char *path, const struct ttsign_param *params,
    size_t nparams, const void *body, size_t len, char *out)
{
	struct ttsign_param *sorted = xcalloc(nparams ? nparams : 1, sizeof(*sorted));
	struct ttsign_piece *pieces = xcalloc(2 * nparams + 4, sizeof(*pieces));
	size_t n = 0, kept = 0;

	for (size_t i = 0; i < nparams; i++)
		if (strcmp(params[i].key, "sign") != 0 && strcmp(params[i].key, "access_token") != 0)
			sorted[kept++] = params[i];
	qsort(sorted, kept, sizeof(*sorted), ttsign_param_cmp);
	pieces[n++] = (struct ttsign_piece){ secret, strlen(secret) };
	pieces[n++] = (struct ttsign_piece){ path, strlen(path) };
	for (size_t i = 0; i < kept; i++) {
		pieces[n++] = (struct ttsign_piece){ sorted[i].key, strlen(sorted[i].key) };
		pieces[n++] = (struct ttsign_piece){ sorted[i].value, strlen(sorted[i].value) };
	}
	if (len > 0)
		pieces[n++] = (struct ttsign_piece){ body, len };
	pieces[n++] = (struct ttsign_piece){ secret, strlen(secret) };
	ttsign_hmac_hex(secret, pieces, n, out);
	free(pieces);
	free(sorted);
}
