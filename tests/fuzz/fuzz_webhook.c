/*
 * fuzz_webhook: libFuzzer target for everything a webhook's bytes reach
 * before the database: the signature check on the raw body, the JSON
 * envelope checks (whenv), the dedupe key, and the order parser that the
 * Get Order Detail answer goes through (apply_normalize).
 *
 * Built and run by tests/fuzz/run.sh with clang -fsanitize=fuzzer,address,
 * undefined; any crash, sanitizer report or failed invariant aborts.
 */
#include "config.h"

#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "orderflow/apply.h"
#include "orderflow/order.h"
#include "orderflow/ttsign.h"
#include "orderflow/whenv.h"

#define CHECK(c) do { if (!(c)) abort(); } while (0)

static void
fuzz_signature(const uint8_t *data, size_t size)
{
	char sig[TTSIGN_HEX_LEN + 1], *header;

	ttsign_webhook("abcdef", "123", data, size, sig);
	CHECK(ttsign_webhook_verify("abcdef", "123", data, size, sig));
	sig[size % TTSIGN_HEX_LEN] ^= 1;
	CHECK(!ttsign_webhook_verify("abcdef", "123", data, size, sig));
	/* The input as the header itself: any bytes, any length. */
	header = strndup((const char *)data, size);
	(void)ttsign_webhook_verify("abcdef", "123", "{}", 2, header);
	free(header);
}

static void
fuzz_envelope(json_t *doc)
{
	struct whenv e;
	char key[WHENV_KEY_MAX];

	if (whenv_parse(doc, &e) != NULL)
		return;
	CHECK(e.shop_id != NULL && strlen(e.shop_id) <= WHENV_ID_MAX);
	CHECK(e.type >= 0 && (e.type != WHENV_ORDER_STATUS || e.order_id != NULL));
	whenv_dedupe_key(&e, key, sizeof(key));
	CHECK(strlen(key) < sizeof(key));
}

static void
fuzz_order(json_t *order)
{
	const char *id;
	char err[256];
	json_t *rec = apply_normalize(order, &id, err, sizeof(err));

	if (rec == NULL) {
		CHECK(err[0] != '\0');
		return;
	}
	CHECK(id != NULL && order_status_from_tiktok(json_string_value(json_object_get(rec,
	    "tiktok_status"))) >= 0);
	CHECK(json_array_size(json_object_get(rec, "items")) >= 1);
	free(json_dumps(rec, JSON_COMPACT));
	json_decref(rec);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	json_t *doc;
	size_t i;
	json_t *o;

	fuzz_signature(data, size);
	if ((doc = json_loadb((const char *)data, size, JSON_REJECT_DUPLICATES, NULL)) == NULL)
		return 0;
	fuzz_envelope(doc);
	fuzz_order(doc);
	json_array_foreach(json_object_get(json_object_get(doc, "data"), "orders"), i, o)
		fuzz_order(o);
	json_decref(doc);
	return 0;
}
