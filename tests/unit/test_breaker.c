/*
 * Unit tests for breaker: the sliding window, open/half-open/closed
 * transitions driven by hand through twheel_run, the single probe, and the
 * transition log lines.
 */
#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "orderflow/breaker.h"
#include "orderflow/log.h"
#include "orderflow/twheel.h"

#define T0	1000000		/* start of the test clock, ms */

/* A TikTok breaker on a fresh wheel at T0. */
static struct twheel *
setup(struct breaker *b, const struct breaker_config *cfg)
{
	struct twheel *w = twheel_new(T0);

	breaker_init(b, "tiktok", cfg, w);
	assert_int_equal(breaker_get_state(b), BREAKER_CLOSED);
	return w;
}

static void
teardown(struct breaker *b, struct twheel *w)
{
	breaker_stop(b);
	assert_int_equal(twheel_count(w), 0);
	twheel_free(w);
}

/* Drive b to OPEN at time at with threshold failures 1 ms apart ending at at. */
static void
open_at(struct breaker *b, struct twheel *w, uint64_t at)
{
	int n = b->cfg.failure_threshold;

	for (int i = 0; i < n; i++) {
		uint64_t now = at - (uint64_t)(n - 1 - i);

		twheel_run(w, now);
		assert_int_equal(breaker_get_state(b), BREAKER_CLOSED);
		assert_true(breaker_allow(b, now));
		breaker_failure(b, now);
	}
	assert_int_equal(breaker_get_state(b), BREAKER_OPEN);
}

static void
test_configs(void **state)
{
	assert_int_equal(BREAKER_TIKTOK.failure_threshold, 10);
	assert_int_equal(BREAKER_TIKTOK.reset_ms, 60000);
	assert_int_equal(BREAKER_TIKTOK.window_ms, 30000);
	assert_int_equal(BREAKER_INVENTORY.failure_threshold, 5);
	assert_int_equal(BREAKER_INVENTORY.reset_ms, 30000);
	assert_int_equal(BREAKER_INVENTORY.window_ms, 15000);
	assert_string_equal(breaker_state_name(BREAKER_CLOSED), "closed");
	assert_string_equal(breaker_state_name(BREAKER_OPEN), "open");
	assert_string_equal(breaker_state_name(BREAKER_HALF_OPEN), "half_open");
	assert_string_equal(breaker_state_name((enum breaker_state)7), "?");
}

/* Opens on exactly the 10th failure inside 30 s, the last at 29.999 s after the first. */
static void
test_opens_at_threshold(void **state)
{
	struct breaker b;
	struct twheel *w = setup(&b, &BREAKER_TIKTOK);

	for (int i = 0; i < 9; i++) {
		breaker_failure(&b, T0 + (uint64_t)i * 1000);
		assert_int_equal(breaker_get_state(&b), BREAKER_CLOSED);
	}
	assert_int_equal(breaker_window_failures(&b, T0 + 29999), 9);
	assert_true(breaker_allow(&b, T0 + 29999));
	breaker_failure(&b, T0 + 29999);
	assert_int_equal(breaker_get_state(&b), BREAKER_OPEN);
	assert_int_equal(atomic_load(&b.opens_total), 1);
	assert_int_equal(atomic_load(&b.failures_total), 10);
	assert_true(twheel_pending(&b.reset_timer));
	teardown(&b, w);
}

/* A failure exactly window_ms old no longer counts; spread failures never open it. */
static void
test_spread_wider_than_window(void **state)
{
	struct breaker b;
	struct twheel *w = setup(&b, &BREAKER_TIKTOK);

	for (int i = 0; i < 9; i++)
		breaker_failure(&b, T0 + (uint64_t)i * 1000);
	breaker_failure(&b, T0 + 30000);	/* the first is now 30 s old */
	assert_int_equal(breaker_get_state(&b), BREAKER_CLOSED);
	assert_int_equal(breaker_window_failures(&b, T0 + 30000), 9);
	teardown(&b, w);

	/* 100 failures, one every 3334 ms: 10 of them span 30006 ms. */
	w = setup(&b, &BREAKER_TIKTOK);
	for (int i = 0; i < 100; i++) {
		uint64_t now = T0 + (uint64_t)i * 3334;

		twheel_run(w, now);
		assert_true(breaker_allow(&b, now));
		breaker_failure(&b, now);
		assert_int_equal(breaker_get_state(&b), BREAKER_CLOSED);
		assert_true(breaker_window_failures(&b, now) <= 9);
	}
	assert_int_equal(atomic_load(&b.opens_total), 0);
	teardown(&b, w);
}

/* While open: every call refused and counted; late outcomes ignored. */
static void
test_rejects_while_open(void **state)
{
	struct breaker b;
	struct twheel *w = setup(&b, &BREAKER_INVENTORY);

	open_at(&b, w, T0 + 100);
	for (int i = 0; i < 50; i++) {
		uint64_t now = T0 + 100 + (uint64_t)i * 500;

		twheel_run(w, now);
		assert_false(breaker_allow(&b, now));
		breaker_success(&b, now);
		breaker_failure(&b, now);
		assert_int_equal(breaker_get_state(&b), BREAKER_OPEN);
	}
	assert_int_equal(atomic_load(&b.rejected_total), 50);
	assert_int_equal(atomic_load(&b.opens_total), 1);
	teardown(&b, w);
}

/* HALF_OPEN exactly reset_ms after opening, driven by the wheel; one probe only. */
static void
test_half_open_one_probe(void **state)
{
	struct breaker b;
	struct twheel *w = setup(&b, &BREAKER_TIKTOK);
	uint64_t opened = T0 + 5000;

	open_at(&b, w, opened);
	/* The wheel may wake early (a lower bound), never late. */
	assert_true(twheel_next_expiry(w) <= opened + 60000);
	assert_int_equal(twheel_run(w, opened + 59999), 0);
	assert_int_equal(breaker_get_state(&b), BREAKER_OPEN);
	assert_int_equal(twheel_run(w, opened + 60000), 1);
	assert_int_equal(breaker_get_state(&b), BREAKER_HALF_OPEN);

	/* An outcome with no probe out is a late one: ignored. */
	breaker_failure(&b, opened + 60000);
	breaker_success(&b, opened + 60000);
	assert_int_equal(breaker_get_state(&b), BREAKER_HALF_OPEN);

	assert_true(breaker_allow(&b, opened + 60001));
	for (int i = 0; i < 10; i++)
		assert_false(breaker_allow(&b, opened + 60002 + (uint64_t)i));
	assert_int_equal(atomic_load(&b.rejected_total), 10);
	teardown(&b, w);
}

/* The probe succeeds: CLOSED with an empty window. */
static void
test_probe_success_closes(void **state)
{
	struct breaker b;
	struct twheel *w = setup(&b, &BREAKER_TIKTOK);
	uint64_t opened = T0;

	open_at(&b, w, opened);
	twheel_run(w, opened + 60000);
	assert_true(breaker_allow(&b, opened + 60000));
	breaker_success(&b, opened + 60100);
	assert_int_equal(breaker_get_state(&b), BREAKER_CLOSED);
	assert_false(twheel_pending(&b.reset_timer));
	assert_int_equal(breaker_window_failures(&b, opened + 60100), 0);
	/* Nine more failures right away do not reopen it: the window was cleared. */
	for (int i = 0; i < 9; i++)
		breaker_failure(&b, opened + 60200);
	assert_int_equal(breaker_get_state(&b), BREAKER_CLOSED);
	breaker_failure(&b, opened + 60200);
	assert_int_equal(breaker_get_state(&b), BREAKER_OPEN);
	assert_int_equal(atomic_load(&b.opens_total), 2);
	teardown(&b, w);
}

/* The probe fails: OPEN again, for a full reset_ms from the failure. */
static void
test_probe_failure_reopens(void **state)
{
	struct breaker b;
	struct twheel *w = setup(&b, &BREAKER_INVENTORY);
	uint64_t opened = T0, probe_fail = T0 + 30000 + 700;

	open_at(&b, w, opened);
	twheel_run(w, opened + 30000);
	assert_int_equal(breaker_get_state(&b), BREAKER_HALF_OPEN);
	assert_true(breaker_allow(&b, opened + 30000));
	twheel_run(w, probe_fail);
	breaker_failure(&b, probe_fail);
	assert_int_equal(breaker_get_state(&b), BREAKER_OPEN);
	assert_int_equal(atomic_load(&b.opens_total), 2);
	assert_true(twheel_next_expiry(w) <= probe_fail + 30000);
	assert_true(twheel_next_expiry(w) > probe_fail);
	assert_false(breaker_allow(&b, probe_fail + 29999));
	twheel_run(w, probe_fail + 29999);
	assert_int_equal(breaker_get_state(&b), BREAKER_OPEN);
	twheel_run(w, probe_fail + 30000);
	assert_int_equal(breaker_get_state(&b), BREAKER_HALF_OPEN);
	teardown(&b, w);
}

/* A probe that never reports counts as failed after reset_ms. */
static void
test_probe_timeout(void **state)
{
	struct breaker b;
	struct twheel *w = setup(&b, &BREAKER_INVENTORY);

	open_at(&b, w, T0);
	twheel_run(w, T0 + 30000);
	assert_true(breaker_allow(&b, T0 + 30000));
	twheel_run(w, T0 + 59999);
	assert_int_equal(breaker_get_state(&b), BREAKER_HALF_OPEN);
	twheel_run(w, T0 + 60000);
	assert_int_equal(breaker_get_state(&b), BREAKER_OPEN);
	twheel_run(w, T0 + 90000);
	assert_int_equal(breaker_get_state(&b), BREAKER_HALF_OPEN);
	teardown(&b, w);
}

/* breaker_allow sees the reset time before the wheel has run: a probe goes out. */
static void
test_allow_ahead_of_wheel(void **state)
{
	struct breaker b;
	struct twheel *w = setup(&b, &BREAKER_INVENTORY);

	open_at(&b, w, T0);
	assert_false(breaker_allow(&b, T0 + 29999));
	assert_true(breaker_allow(&b, T0 + 30000));
	assert_int_equal(breaker_get_state(&b), BREAKER_HALF_OPEN);
	assert_false(breaker_allow(&b, T0 + 30001));
	/* The old reset timer was replaced by the probe deadline: nothing fires early. */
	assert_int_equal(twheel_run(w, T0 + 30001), 0);
	breaker_success(&b, T0 + 30002);
	assert_int_equal(breaker_get_state(&b), BREAKER_CLOSED);
	teardown(&b, w);
}

/* Success while CLOSED does not clear the window: 9 failures, success, 1 failure opens. */
static void
test_success_keeps_window(void **state)
{
	struct breaker b;
	struct twheel *w = setup(&b, &BREAKER_TIKTOK);

	for (int i = 0; i < 9; i++)
		breaker_failure(&b, T0 + (uint64_t)i);
	for (int i = 0; i < 100; i++)
		breaker_success(&b, T0 + 10);
	assert_int_equal(breaker_window_failures(&b, T0 + 10), 9);
	breaker_failure(&b, T0 + 20);
	assert_int_equal(breaker_get_state(&b), BREAKER_OPEN);
	teardown(&b, w);
}

/* Stop cancels the timer; thresholds out of range are clamped; long names cut. */
static void
test_stop_and_clamp(void **state)
{
	struct breaker_config zero = { 0, 1000, 1000 }, huge = { 1000, 1000, 1000 };
	struct twheel *w = twheel_new(0);
	struct breaker b;

	breaker_init(&b, "a-very-long-upstream-name-that-does-not-fit-in-the-buffer", &zero, w);
	assert_int_equal(b.cfg.failure_threshold, 1);
	assert_int_equal(strlen(b.name), BREAKER_NAME_MAX - 1);
	breaker_failure(&b, 5);
	assert_int_equal(breaker_get_state(&b), BREAKER_OPEN);
	assert_int_equal(twheel_count(w), 1);
	breaker_stop(&b);
	assert_int_equal(twheel_count(w), 0);
	assert_int_equal(twheel_run(w, 10000), 0);

	breaker_init(&b, "x", &huge, w);
	assert_int_equal(b.cfg.failure_threshold, BREAKER_MAX_THRESHOLD);
	for (int i = 0; i < BREAKER_MAX_THRESHOLD - 1; i++)
		breaker_failure(&b, 20000);
	assert_int_equal(breaker_get_state(&b), BREAKER_CLOSED);
	breaker_failure(&b, 20000);
	assert_int_equal(breaker_get_state(&b), BREAKER_OPEN);
	breaker_stop(&b);
	twheel_free(w);
}

/* Every transition is one info line naming the breaker, from and to. */
static void
test_transition_log(void **state)
{
	struct breaker b;
	struct twheel *w;
	char buf[4096], *p;
	FILE *tmp = tmpfile();
	int saved = dup(STDERR_FILENO);
	size_t n;

	assert_non_null(tmp);
	assert_true(saved >= 0);
	log_set_level(LOG_INFO);
	assert_true(dup2(fileno(tmp), STDERR_FILENO) >= 0);

	w = setup(&b, &BREAKER_INVENTORY);
	open_at(&b, w, T0);
	twheel_run(w, T0 + 30000);
	assert_true(breaker_allow(&b, T0 + 30000));
	breaker_success(&b, T0 + 30001);
	teardown(&b, w);

	log_set_level(LOG_ERROR);
	assert_true(dup2(saved, STDERR_FILENO) >= 0);
	close(saved);
	rewind(tmp);
	n = fread(buf, 1, sizeof(buf) - 1, tmp);
	buf[n] = '\0';
	fclose(tmp);

	p = strstr(buf, "breaker=tiktok from=closed to=open");
	assert_non_null(p);
	p = strstr(p, "breaker=tiktok from=open to=half_open");
	assert_non_null(p);
	p = strstr(p, "breaker=tiktok from=half_open to=closed");
	assert_non_null(p);
	assert_non_null(strstr(buf, "level=info"));
	assert_non_null(strstr(buf, "msg=\"circuit breaker state\""));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_configs),
		cmocka_unit_test(test_opens_at_threshold),
		cmocka_unit_test(test_spread_wider_than_window),
		cmocka_unit_test(test_rejects_while_open),
		cmocka_unit_test(test_half_open_one_probe),
		cmocka_unit_test(test_probe_success_closes),
		cmocka_unit_test(test_probe_failure_reopens),
		cmocka_unit_test(test_probe_timeout),
		cmocka_unit_test(test_allow_ahead_of_wheel),
		cmocka_unit_test(test_success_keeps_window),
		cmocka_unit_test(test_stop_and_clamp),
		cmocka_unit_test(test_transition_log),
	};

	/* Transition lines would clutter the TAP stream; one test turns them on. */
	log_set_level(LOG_ERROR);
	cmocka_set_message_output(CM_OUTPUT_TAP);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
