/*
 * fuzz_ship: libFuzzer target for the shipping decisions over outside
 * data (ship_plan.c): the body of PUT /api/settings/shipping and of a
 * SKU's parcel, the carrier's rates (EasyPost Rate objects) under a rule,
 * TikTok's shipping providers and recipient address, and the parcel made
 * from an order's lines.  The input is one JSON object whose members feed
 * each of them; a chosen rate must be one of the rates.
 *
 * Built and run by tests/fuzz/run.sh; any crash, sanitizer report or
 * failed invariant aborts.
 */
#include "config.h"

#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "orderflow/ship_plan.h"

#define CHECK(c) do { if (!(c)) abort(); } while (0)

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char why[256];
	json_t *doc, *out;
	int pick;

	if ((doc = json_loadb((const char *)data, size, JSON_REJECT_DUPLICATES, NULL)) == NULL)
		return 0;
	why[0] = '\0';
	if (sp_settings_invalid(doc, why, sizeof(why)) != NULL)
		CHECK(why[0] != '\0');
	(void)sp_parcel_invalid(json_object_get(doc, "parcel"), why, sizeof(why));
	pick = sp_choose_rate(json_object_get(doc, "rates"), json_object_get(doc, "rule"), why,
	    sizeof(why));
	CHECK(pick < 0 || (size_t)pick < json_array_size(json_object_get(doc, "rates")));
	if (json_is_string(json_object_get(doc, "carrier")))
		(void)sp_provider_id(json_object_get(doc, "providers"),
		    json_string_value(json_object_get(doc, "carrier")));
	if (json_is_string(json_object_get(doc, "rate")))
		(void)sp_cents(json_string_value(json_object_get(doc, "rate")));
	if ((out = sp_to_address(json_object_get(doc, "address"), "Buyer", "5550100",
	    "b@example.com", why, sizeof(why))) != NULL)
		json_decref(out);
	if ((out = sp_parcel(json_object_get(doc, "items"), json_object_get(doc, "lines"),
	    json_object_get(doc, "default"), why, sizeof(why))) != NULL)
		json_decref(out);
	json_decref(doc);
	return 0;
}
