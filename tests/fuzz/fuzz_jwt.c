/*
 * fuzz_jwt: libFuzzer target for the dashboard's JWT parser (jwt.c): any
 * bytes as a token, verified against a fixed secret; and base64url
 * decoding, whose output must encode back to its input when it decodes.
 *
 * Built and run by tests/fuzz/run.sh; any crash, sanitizer report or
 * failed invariant aborts.
 */
#include "config.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "orderflow/jwt.h"

#define CHECK(c) do { if (!(c)) abort(); } while (0)

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char creator[JWT_UUID_LEN + 1], *text;
	const char *why = NULL;
	unsigned char *dec;
	char *enc;
	long n;

	text = malloc(size + 1);
	memcpy(text, data, size);
	text[size] = '\0';
	if (jwt_verify(text, size, "fuzz-secret-0123456789", "authenticated", 30000,
	    1760000000000LL, creator, &why) == JWT_OK)
		CHECK(strlen(creator) == JWT_UUID_LEN);
	else
		CHECK(why != NULL && why[0] != '\0');
	(void)jwt_uuid_parse(text, size, creator);
	dec = malloc(size + 1);
	if ((n = jwt_b64url_decode(text, size, dec)) >= 0) {
		enc = malloc(4 * (((size_t)n + 2) / 3) + 1);
		CHECK(jwt_b64url_encode(dec, (size_t)n, enc) == size && memcmp(enc, text, size) == 0);
		free(enc);
	}
	free(dec);
	free(text);
	return 0;
}
