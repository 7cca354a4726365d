/*
 * Unit tests for ttsign: TikTok's published test vectors, and the ways a
 * webhook signature must fail.
 */
#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "orderflow/ttsign.h"

static const char vector_body[] =
    "{\"type\":1,\"tts_notification_id\":\"7380066284010030890\",\"shop_id\":\"7495540735365777507\","
    "\"timestamp\":1718305585,\"data\":{\"is_on_hold_order\":true,\"order_id\":\"576653688135258178\","
    "\"order_status\":\"UNPAID\",\"update_time\":1718305585}}";
static const char vector_sig[] = "5dec0f11ec2f6783b8deee53c9ffbf8d024302f7c7e7fa55a35d17629031ac05";

static void
test_webhook_vector(void **state)
{
	char out[TTSIGN_HEX_LEN + 1];

	ttsign_webhook("abcdef", "123", vector_body, strlen(vector_body), out);
	assert_string_equal(out, vector_sig);
	assert_true(ttsign_webhook_verify("abcdef", "123", vector_body, strlen(vector_body), vector_sig));
}

static void
test_webhook_uppercase_hex(void **state)
{
	char upper[TTSIGN_HEX_LEN + 1];

	for (size_t i = 0; i <= TTSIGN_HEX_LEN; i++)
		upper[i] = (char)(vector_sig[i] >= 'a' && vector_sig[i] <= 'f' ?
		    vector_sig[i] - 'a' + 'A' : vector_sig[i]);
	assert_true(ttsign_webhook_verify("abcdef", "123", vector_body, strlen(vector_body), upper));
	{
		/* Surrounding spaces and tabs are not part of the field value (RFC 9110 5.5). */
		char padded[TTSIGN_HEX_LEN + 8];

		snprintf(padded, sizeof(padded), "\t %s \t", vector_sig);
		assert_true(ttsign_webhook_verify("abcdef", "123", vector_body, strlen(vector_body),
		    padded));
		snprintf(padded, sizeof(padded), "%.32s %s", vector_sig, vector_sig + 32);
		assert_false(ttsign_webhook_verify("abcdef", "123", vector_body, strlen(vector_body),
		    padded));
	}
}

static void
test_webhook_rejects(void **state)
{
	char bad[TTSIGN_HEX_LEN + 1];
	/* The same JSON re-serialised with spaces: the signature is over bytes, not meaning. */
	const char *reser = "{\"type\": 1, \"tts_notification_id\": \"7380066284010030890\"}";

	memcpy(bad, vector_sig, sizeof(bad));
	bad[10] = bad[10] == '0' ? '1' : '0';
	assert_false(ttsign_webhook_verify("abcdef", "123", vector_body, strlen(vector_body), bad));
	assert_false(ttsign_webhook_verify("abcdef", "124", vector_body, strlen(vector_body), vector_sig));
	assert_false(ttsign_webhook_verify("abcdeg", "123", vector_body, strlen(vector_body), vector_sig));
	assert_false(ttsign_webhook_verify("abcdef", "123", vector_body, strlen(vector_body) - 1,
	    vector_sig));
	assert_false(ttsign_webhook_verify("abcdef", "123", reser, strlen(reser), vector_sig));
	assert_false(ttsign_webhook_verify("abcdef", "123", vector_body, strlen(vector_body), NULL));
	assert_false(ttsign_webhook_verify("abcdef", "123", vector_body, strlen(vector_body), ""));
	/* Bearer prefix, truncation, non-hex: all refused without a comparison. */
	assert_false(ttsign_webhook_verify("abcdef", "123", vector_body, strlen(vector_body),
	    "Bearer 5dec0f11ec2f6783b8deee53c9ffbf8d024302f7c7e7fa55a35d17629031ac05"));
	assert_false(ttsign_webhook_verify("abcdef", "123", vector_body, strlen(vector_body),
	    "5dec0f11ec2f6783b8deee53c9ffbf8d024302f7c7e7fa55a35d17629031ac0"));
	memcpy(bad, vector_sig, sizeof(bad));
	bad[0] = 'g';
	assert_false(ttsign_webhook_verify("abcdef", "123", vector_body, strlen(vector_body), bad));
}

static void
test_request_vector(void **state)
{
	const struct ttsign_param params[] = {
		{ "timestamp", "1623812664" }, { "app_key", "29a39d" },
		/* Excluded from the signed text by TikTok's rules. */
		{ "sign", "whatever" }, { "access_token", "tok" },
	};
	char out[TTSIGN_HEX_LEN + 1];

	ttsign_request("e59af819cc", "/authorization/202309/shops", params, 4, NULL, 0, out);
	assert_string_equal(out, "b596b73e0cc6de07ac26f036364178ab16b0a907af13d43f0a0cd2345f582dc8");
	ttsign_request("e59af819cc", "/authorization/202309/shops", params, 2, "", 0, out);
	assert_string_equal(out, "b596b73e0cc6de07ac26f036364178ab16b0a907af13d43f0a0cd2345f582dc8");
}

static void
test_request_body_counts(void **state)
{
	const struct ttsign_param params[] = { { "app_key", "29a39d" }, { "timestamp", "1623812664" } };
	char a[TTSIGN_HEX_LEN + 1], b[TTSIGN_HEX_LEN + 1];

	ttsign_request("e59af819cc", "/order/202309/orders/search", params, 2, "{}", 2, a);
	ttsign_request("e59af819cc", "/order/202309/orders/search", params, 2, "{ }", 3, b);
	assert_string_not_equal(a, b);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_webhook_vector),
		cmocka_unit_test(test_webhook_uppercase_hex),
		cmocka_unit_test(test_webhook_rejects),
		cmocka_unit_test(test_request_vector),
		cmocka_unit_test(test_request_body_counts),
	};

	cmocka_set_message_output(CM_OUTPUT_TAP);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
