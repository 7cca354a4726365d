/*
 * Unit tests for backoff: the spec's policies, jitter bounds for every
 * attempt, the cap, exhaustion, and odd inputs.
 */
#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "orderflow/backoff.h"
#include "orderflow/util.h"

/* d before jitter, as the header defines it, for the checks below. */
static int64_t
expected_cap(const struct backoff_policy *p, int attempt)
{
	double d = (double)p->base_ms;

	for (int i = 1; i < attempt && d < (double)p->max_ms; i++)
		d *= p->multiplier;
	return d < (double)p->max_ms ? (int64_t)d : p->max_ms;
}

/* Every attempt: rnd 0 gives d/2, d/2 gives the top, anything stays in [d/2, d]. */
static void
check_bounds(const struct backoff_policy *p)
{
	for (int attempt = 1; attempt <= 64; attempt++) {
		int64_t d = expected_cap(p, attempt);

		assert_int_equal(backoff_delay(p, attempt, 0), d / 2);
		assert_int_equal(backoff_delay(p, attempt, (uint32_t)(d / 2)), d / 2 + d / 2);
		assert_true(backoff_delay(p, attempt, UINT32_MAX) >= d / 2);
		assert_true(backoff_delay(p, attempt, UINT32_MAX) <= d);
		for (int i = 0; i < 1000; i++) {
			int64_t v = backoff_delay(p, attempt, util_random());

			assert_true(v >= d / 2);
			assert_true(v <= d);
			assert_true(v <= p->max_ms);
		}
	}
}

static void
test_tiktok(void **state)
{
	static const int64_t want[] = { 1000, 2000, 4000, 8000, 16000, 30000, 30000 };
	const struct backoff_policy *p = &BACKOFF_TIKTOK;

	assert_int_equal(p->max_attempts, 5);
	assert_int_equal(p->base_ms, 1000);
	assert_int_equal(p->max_ms, 30000);
	for (size_t i = 0; i < NELEM(want); i++) {
		assert_int_equal(backoff_delay(p, (int)i + 1, 0), want[i] / 2);
		assert_int_equal(backoff_delay(p, (int)i + 1, (uint32_t)(want[i] / 2)), want[i]);
	}
	check_bounds(p);
}

static void
test_workflow(void **state)
{
	/* 2000 * 1.5^n: 2000, 3000, 4500, 6750, 10125, 15187.5 -> 15187 ... */
	static const int64_t want[] = { 2000, 3000, 4500, 6750, 10125, 15187, 22781,
	    34171, 51257, 60000, 60000 };
	const struct backoff_policy *p = &BACKOFF_WORKFLOW;

	assert_int_equal(p->max_attempts, 3);
	for (size_t i = 0; i < NELEM(want); i++)
		assert_int_equal(backoff_delay(p, (int)i + 1, 0), want[i] / 2);
	check_bounds(p);
}

static void
test_inventory(void **state)
{
	static const int64_t want[] = { 500, 1000, 2000, 4000, 5000, 5000 };
	const struct backoff_policy *p = &BACKOFF_INVENTORY;

	assert_int_equal(p->max_attempts, 2);
	for (size_t i = 0; i < NELEM(want); i++)
		assert_int_equal(backoff_delay(p, (int)i + 1, (uint32_t)(want[i] / 2)), want[i]);
	check_bounds(p);
}

static void
test_cap_and_odd_inputs(void **state)
{
	const struct backoff_policy big = { 10, 1000, 30000, 2.0 };
	const struct backoff_policy flat = { 3, 700, 30000, 1.0 };
	const struct backoff_policy zero = { 3, 0, 30000, 2.0 };
	const struct backoff_policy low_cap = { 3, 5000, 1000, 2.0 };
	const struct backoff_policy odd = { 3, 1, 1, 2.0 };

	/* Huge attempt numbers saturate instead of overflowing. */
	assert_int_equal(backoff_delay(&big, 1000000, 0), 15000);
	assert_int_equal(backoff_delay(&big, 1000000, UINT32_MAX), 15000 + UINT32_MAX % 15001);
	/* attempt < 1 counts as the first retry. */
	assert_int_equal(backoff_delay(&big, 0, 0), 500);
	assert_int_equal(backoff_delay(&big, -5, 0), 500);
	assert_int_equal(backoff_delay(&flat, 3, 0), 350);
	assert_int_equal(backoff_delay(&zero, 2, UINT32_MAX), 0);
	/* A cap below the base wins. */
	assert_int_equal(backoff_delay(&low_cap, 1, 500), 1000);
	assert_true(backoff_delay(&low_cap, 1, UINT32_MAX) <= 1000);
	/* d = 1: the delay is 0 or 1, never above the cap. */
	assert_true(backoff_delay(&odd, 1, UINT32_MAX) <= 1);
}

static void
test_exhausted(void **state)
{
	/* TikTok: 5 attempts = the first call and 4 retries. */
	for (int n = 0; n < 5; n++)
		assert_false(backoff_exhausted(&BACKOFF_TIKTOK, n));
	assert_true(backoff_exhausted(&BACKOFF_TIKTOK, 5));
	assert_true(backoff_exhausted(&BACKOFF_TIKTOK, 6));
	assert_false(backoff_exhausted(&BACKOFF_WORKFLOW, 2));
	assert_true(backoff_exhausted(&BACKOFF_WORKFLOW, 3));
	assert_false(backoff_exhausted(&BACKOFF_INVENTORY, 1));
	assert_true(backoff_exhausted(&BACKOFF_INVENTORY, 2));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_tiktok),
		cmocka_unit_test(test_workflow),
		cmocka_unit_test(test_inventory),
		cmocka_unit_test(test_cap_and_odd_inputs),
		cmocka_unit_test(test_exhausted),
	};

	cmocka_set_message_output(CM_OUTPUT_TAP);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
