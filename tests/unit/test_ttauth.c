/*
 * Unit tests for ttauth: authorization states (forged, altered, expired,
 * bound to their creator), the authorization link, and the checks on
 * TikTok's token and shop answers.  Shapes from TikTok Shop's
 * "Authorization overview" (auth.tiktok-shops.com /api/v2/token/get: data
 * access_token, access_token_expire_in as a Unix timestamp, refresh_token,
 * refresh_token_expire_in, open_id, seller_name) and Get Authorized Shops
 * (/authorization/202309/shops: data.shops[] id, name, region, cipher).
 */
#include "config.h"

#include <jansson.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "orderflow/ttauth.h"
#include "unit.h"

static const char creator[] = "2f1c7c3e-8a7b-4c1e-9d6f-0a1b2c3d4e5f";
#define NOW 1760000000

static void
test_state_round_trip(void **st)
{
	char state[TTAUTH_STATE_LEN + 1], nonce[TTAUTH_NONCE_HEX + 1];
	char who[37], n2[TTAUTH_NONCE_HEX + 1];

	assert_true(ttauth_state_make("secret", creator, NOW + 600, state, nonce));
	assert_int_equal(strlen(state), TTAUTH_STATE_LEN);
	assert_int_equal(strlen(nonce), TTAUTH_NONCE_HEX);
	assert_int_equal(strspn(state, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
	    "0123456789-_"), TTAUTH_STATE_LEN);
	assert_int_equal(ttauth_state_check("secret", state, NOW, who, n2), TTAUTH_STATE_OK);
	assert_string_equal(who, creator);
	assert_string_equal(n2, nonce);
}

static void
test_state_needs_a_uuid(void **st)
{
	char state[TTAUTH_STATE_LEN + 1], nonce[TTAUTH_NONCE_HEX + 1], who[37];

	assert_false(ttauth_state_make("secret", "not-a-uuid", NOW + 600, state, nonce));
	assert_false(ttauth_state_make("secret", "2f1c7c3e-8a7b-4c1e-9d6f-0a1b2c3d4e5g", NOW, state,
	    nonce));
	assert_false(ttauth_state_make("secret", "2f1c7c3e8a7b-4c1e-9d6f-0a1b2c3d4e5f0", NOW, state,
	    nonce));
	/* Upper case is the same UUID; the state names it in lower case. */
	assert_true(ttauth_state_make("secret", "2F1C7C3E-8A7B-4C1E-9D6F-0A1B2C3D4E5F", NOW + 600,
	    state, nonce));
	assert_int_equal(ttauth_state_check("secret", state, NOW, who, nonce), TTAUTH_STATE_OK);
	assert_string_equal(who, creator);
}

static void
test_state_nonces_differ(void **st)
{
	char a[TTAUTH_STATE_LEN + 1], b[TTAUTH_STATE_LEN + 1];
	char na[TTAUTH_NONCE_HEX + 1], nb[TTAUTH_NONCE_HEX + 1];

	assert_true(ttauth_state_make("secret", creator, NOW + 600, a, na));
	assert_true(ttauth_state_make("secret", creator, NOW + 600, b, nb));
	assert_string_not_equal(a, b);
	assert_string_not_equal(na, nb);
}

static void
test_state_expired(void **st)
{
	char state[TTAUTH_STATE_LEN + 1], nonce[TTAUTH_NONCE_HEX + 1], who[37];

	assert_true(ttauth_state_make("secret", creator, NOW + 600, state, nonce));
	assert_int_equal(ttauth_state_check("secret", state, NOW + 600, who, nonce),
	    TTAUTH_STATE_EXPIRED);
	assert_int_equal(ttauth_state_check("secret", state, NOW + 599, who, nonce), TTAUTH_STATE_OK);
}

/* Another app's secret, any flipped character, or a changed creator: forged. */
static void
test_state_forged(void **st)
{
	char state[TTAUTH_STATE_LEN + 1], nonce[TTAUTH_NONCE_HEX + 1], who[37];
	static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

	assert_true(ttauth_state_make("secret", creator, NOW + 600, state, nonce));
	assert_int_equal(ttauth_state_check("other", state, NOW, who, nonce), TTAUTH_STATE_FORGED);
	/* The last character holds 2 padding bits: flip only the first 74. */
	for (size_t i = 0; i < TTAUTH_STATE_LEN - 1; i++) {
		char bad[TTAUTH_STATE_LEN + 1];
		enum ttauth_state_err e;

		memcpy(bad, state, sizeof(bad));
		bad[i] = bad[i] == alphabet[0] ? alphabet[1] : alphabet[0];
		e = ttauth_state_check("secret", bad, NOW, who, nonce);
		assert_true(e == TTAUTH_STATE_FORGED || e == TTAUTH_STATE_MALFORMED);
	}
}

static void
test_state_malformed(void **st)
{
	char who[37], nonce[TTAUTH_NONCE_HEX + 1];
	char longer[TTAUTH_STATE_LEN + 2];

	assert_int_equal(ttauth_state_check("secret", NULL, NOW, who, nonce), TTAUTH_STATE_MALFORMED);
	assert_int_equal(ttauth_state_check("secret", "", NOW, who, nonce), TTAUTH_STATE_MALFORMED);
	assert_int_equal(ttauth_state_check("secret", "abc", NOW, who, nonce), TTAUTH_STATE_MALFORMED);
	memset(longer, 'A', sizeof(longer) - 1);
	longer[sizeof(longer) - 1] = '\0';
	assert_int_equal(ttauth_state_check("secret", longer, NOW, who, nonce), TTAUTH_STATE_MALFORMED);
	longer[TTAUTH_STATE_LEN] = '\0';
	longer[3] = '+';	/* not base64url */
	assert_int_equal(ttauth_state_check("secret", longer, NOW, who, nonce), TTAUTH_STATE_MALFORMED);
}

static void
test_authorize_url(void **st)
{
	char *u = ttauth_authorize_url("https://services.tiktokshop.com/open/authorize", "7000 1",
	    "ab-_");

	assert_string_equal(u, "https://services.tiktokshop.com/open/authorize?service_id=7000%201"
	    "&state=ab-_");
	free(u);
}

static void
test_grant_timestamps(void **st)
{
	json_t *d = unit_json("{'access_token':'ROW_a','access_token_expire_in':1760604800,"
	    "'refresh_token':'ROW_r','refresh_token_expire_in':1791536000,'open_id':'o1',"
	    "'seller_name':'Shop','seller_base_region':'US'}", 0);
	struct ttauth_grant g;
	const char *why = NULL;

	assert_true(ttauth_grant_parse(d, NOW, true, &g, &why));
	assert_string_equal(g.access_token, "ROW_a");
	assert_string_equal(g.refresh_token, "ROW_r");
	assert_string_equal(g.open_id, "o1");
	assert_string_equal(g.seller_name, "Shop");
	assert_int_equal(g.access_expires, 1760604800);
	assert_int_equal(g.refresh_expires, 1791536000);
	json_decref(d);
}

/* Some clients report a duration: taken as seconds from now. */
static void
test_grant_durations(void **st)
{
	json_t *d = unit_json("{'access_token':'a','access_token_expire_in':604800,"
	    "'refresh_token':'r','refresh_token_expire_in':31536000}", 0);
	struct ttauth_grant g;
	const char *why = NULL;

	assert_true(ttauth_grant_parse(d, NOW, false, &g, &why));
	assert_int_equal(g.access_expires, NOW + 604800);
	assert_null(g.open_id);
	assert_false(ttauth_grant_parse(d, NOW, true, &g, &why));
	assert_string_equal(why, "open_id is missing");
	json_decref(d);
}

static void
test_grant_refused(void **st)
{
	static const char *const bad[] = {
		"{'refresh_token':'r','access_token_expire_in':1760604800,'refresh_token_expire_in':1791536000}",
		"{'access_token':'','refresh_token':'r','access_token_expire_in':1760604800,'refresh_token_expire_in':1791536000}",
		"{'access_token':'a b','refresh_token':'r','access_token_expire_in':1760604800,'refresh_token_expire_in':1791536000}",
		"{'access_token':'a','refresh_token':'r','access_token_expire_in':1700000000,'refresh_token_expire_in':1791536000}",
		"{'access_token':'a','refresh_token':'r','access_token_expire_in':'1760604800','refresh_token_expire_in':1791536000}",
		"{'access_token':'a','refresh_token':'r','access_token_expire_in':1760604800}",
		"{'access_token':'a','refresh_token':'r','access_token_expire_in':1760604800,'refresh_token_expire_in':-5}",
		"[]",
	};
	struct ttauth_grant g;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		json_t *d = unit_json(bad[i], 0);
		const char *why = NULL;

		assert_false(ttauth_grant_parse(d, NOW, false, &g, &why));
		assert_non_null(why);
		json_decref(d);
	}
}

static void
test_shops(void **st)
{
	json_t *d = unit_json("{'shops':[{'id':'7494105515082810525','name':'Sandbox','region':'GB',"
	    "'code':'GBLC','cipher':'GCP_sz2-9AAAAAC5','seller_type':'LOCAL'},"
	    "{'id':'7','cipher':'c2','region':'u s','name':'bad\\u0001name'}]}", 0);
	const char *why = NULL;
	json_t *out = ttauth_shops_parse(d, &why);

	assert_non_null(out);
	assert_int_equal(json_array_size(out), 2);
	assert_string_equal(json_string_value(json_object_get(json_array_get(out, 0), "cipher")),
	    "GCP_sz2-9AAAAAC5");
	assert_string_equal(json_string_value(json_object_get(json_array_get(out, 0), "region")), "GB");
	/* A bad region or name is dropped, not trusted. */
	assert_true(json_is_null(json_object_get(json_array_get(out, 1), "region")));
	assert_true(json_is_null(json_object_get(json_array_get(out, 1), "name")));
	assert_null(json_object_get(json_array_get(out, 0), "code"));
	json_decref(out);
	json_decref(d);
}

static void
test_shops_refused(void **st)
{
	static const char *const bad[] = {
		"{}", "{'shops':[]}", "{'shops':{}}", "{'shops':[{'id':'12a','cipher':'c'}]}",
		"{'shops':[{'id':'1'}]}", "{'shops':[{'id':'1','cipher':'has space'}]}",
		"{'shops':[{'cipher':'c'}]}",
	};

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		json_t *d = unit_json(bad[i], 0);
		const char *why = NULL;

		assert_null(ttauth_shops_parse(d, &why));
		assert_non_null(why);
		json_decref(d);
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_state_round_trip),
		cmocka_unit_test(test_state_needs_a_uuid),
		cmocka_unit_test(test_state_nonces_differ),
		cmocka_unit_test(test_state_expired),
		cmocka_unit_test(test_state_forged),
		cmocka_unit_test(test_state_malformed),
		cmocka_unit_test(test_authorize_url),
		cmocka_unit_test(test_grant_timestamps),
		cmocka_unit_test(test_grant_durations),
		cmocka_unit_test(test_grant_refused),
		cmocka_unit_test(test_shops),
		cmocka_unit_test(test_shops_refused),
	};

	cmocka_set_message_output(CM_OUTPUT_TAP);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
