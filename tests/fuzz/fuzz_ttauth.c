/*
 * fuzz_ttauth: libFuzzer target for what TikTok's authorization flow lets
 * outsiders send: the callback's state (any bytes; only states made with
 * the secret may pass), and the token endpoints' and Get Authorized Shops'
 * answers (ttauth_grant_parse, ttauth_shops_parse), whose accepted values
 * must meet the checks the database relies on.
 *
 * Built and run by tests/fuzz/run.sh; any crash, sanitizer report or
 * failed invariant aborts.
 */
#include "config.h"

#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "orderflow/ttauth.h"

#define CHECK(c) do { if (!(c)) abort(); } while (0)
#define NOW 1760000000

static void
fuzz_state(const uint8_t *data, size_t size)
{
	char *text = strndup((const char *)data, size), creator[37], nonce[TTAUTH_NONCE_HEX + 1];
	char state[TTAUTH_STATE_LEN + 1];

	/* Random bytes are never a good state: the MAC is 128 bits. */
	CHECK(ttauth_state_check("fuzz-secret", text, NOW, creator, nonce) != TTAUTH_STATE_OK);
	CHECK(ttauth_state_make("fuzz-secret", "2f1c7c3e-8a7b-4c1e-9d6f-0a1b2c3d4e5f", NOW + 60,
	    state, nonce));
	CHECK(ttauth_state_check("fuzz-secret", state, NOW, creator, nonce) == TTAUTH_STATE_OK);
	(void)ttauth_token_ok(text, TTAUTH_TOKEN_MAX);
	free(text);
}

static void
fuzz_answers(json_t *doc)
{
	struct ttauth_grant g;
	const char *why = NULL;
	json_t *shops, *s;
	size_t i;

	if (ttauth_grant_parse(doc, NOW, true, &g, &why)) {
		CHECK(ttauth_token_ok(g.access_token, TTAUTH_TOKEN_MAX));
		CHECK(ttauth_token_ok(g.refresh_token, TTAUTH_TOKEN_MAX));
		CHECK(g.open_id != NULL && g.access_expires > NOW && g.refresh_expires > NOW);
	} else {
		CHECK(why != NULL);
	}
	why = NULL;
	if ((shops = ttauth_shops_parse(doc, &why)) == NULL) {
		CHECK(why != NULL);
		return;
	}
	CHECK(json_array_size(shops) >= 1 && json_array_size(shops) <= TTAUTH_SHOPS_MAX);
	json_array_foreach(shops, i, s) {
		const char *id = json_string_value(json_object_get(s, "id"));

		CHECK(id != NULL && strlen(id) <= 64 && strspn(id, "0123456789") == strlen(id));
		CHECK(ttauth_token_ok(json_string_value(json_object_get(s, "cipher")), 256));
	}
	json_decref(shops);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	json_t *doc;

	fuzz_state(data, size);
	if ((doc = json_loadb((const char *)data, size, JSON_REJECT_DUPLICATES, NULL)) != NULL) {
		fuzz_answers(doc);
		fuzz_answers(json_object_get(doc, "data"));
		json_decref(doc);
	}
	return 0;
}
