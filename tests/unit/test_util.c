/*
 * Unit tests for util: JSON escaping, clocks, jitter bounds, IP literals.
 */
#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "orderflow/util.h"

static void
test_json_escape(void **state)
{
	char buf[64];

	assert_int_equal(util_json_escape(buf, sizeof(buf), "a\"b\\c\n\x01"), 19);
	assert_string_equal(buf, "a\\\"b\\\\c\\u000a\\u0001");
	/* Too small: truncated, terminated, and the needed size returned. */
	assert_int_equal(util_json_escape(buf, 4, "abcdef"), 6);
	assert_string_equal(buf, "abc");
}

static void
test_rfc3339(void **state)
{
	char buf[32];

	util_rfc3339(buf, sizeof(buf), 1718305585123LL);
	assert_string_equal(buf, "2024-06-13T19:06:25.123Z");
}

static void
test_jitter_bounds(void **state)
{
	for (int i = 0; i < 10000; i++) {
		int64_t j = util_jitter(1000);

		assert_in_range(j, 750, 1250);
	}
	assert_int_equal(util_jitter(1), 1);
}

static void
test_ip_literal(void **state)
{
	assert_true(util_is_ip_literal("127.0.0.1"));
	assert_true(util_is_ip_literal("::1"));
	assert_false(util_is_ip_literal("localhost"));
	assert_false(util_is_ip_literal("127.0.0.1:80"));
	assert_false(util_is_ip_literal(""));
}

static void
test_mono_clock(void **state)
{
	int64_t a = util_mono_us(), b = util_mono_us();

	assert_true(b >= a);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_json_escape),
		cmocka_unit_test(test_rfc3339),
		cmocka_unit_test(test_jitter_bounds),
		cmocka_unit_test(test_ip_literal),
		cmocka_unit_test(test_mono_clock),
	};

	cmocka_set_message_output(CM_OUTPUT_TAP);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
