/*
 * Unit tests for uset: parsing, membership through growth and deletes
 * (checked against a plain array), tombstones reused without growth, and
 * the size of 100,000 members.
 */
#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "orderflow/uset.h"

/* The n-th test UUID, as text (distinct for distinct n). */
static void
nth(char buf[37], unsigned n)
{
	snprintf(buf, 37, "%08x-%04x-4%03x-8%03x-%012x", n * 2654435761u, n & 0xffff,
	    (n >> 4) & 0xfff, n & 0xfff, n);
}

static void
test_parse(void **state)
{
	unsigned char k[16];

	(void)state;
	assert_true(uset_parse("0053cb6c-f974-4f19-9d1e-2171187c29d5", k));
	assert_int_equal(k[0], 0x00);
	assert_int_equal(k[1], 0x53);
	assert_int_equal(k[15], 0xd5);
	assert_true(uset_parse("0053CB6C-F974-4F19-9D1E-2171187C29D5", k));
	assert_int_equal(k[2], 0xcb);
	assert_false(uset_parse("0053cb6c-f974-4f19-9d1e-2171187c29d", k));	/* short */
	assert_false(uset_parse("0053cb6c-f974-4f19-9d1e-2171187c29d55", k));	/* long */
	assert_false(uset_parse("0053cb6cf974-4f19-9d1e-2171187c29d5x", k));	/* no dash */
	assert_false(uset_parse("0053cb6c-f974-4f19-9d1e-2171187c29dg", k));	/* not hex */
	assert_false(uset_parse("", k));
}

static void
test_add_has_del_against_an_array(void **state)
{
	enum { N = 5000 };
	static bool member[N];
	struct uset *s = uset_new();
	char id[37];
	size_t want = 0;

	(void)state;
	for (unsigned i = 0; i < N; i++) {
		nth(id, i);
		assert_true(uset_add(s, id));
		member[i] = true;
	}
	want = N;
	assert_int_equal(uset_count(s), want);
	/* Remove every third, add some back twice: the set and the array agree. */
	for (unsigned i = 0; i < N; i += 3) {
		nth(id, i);
		assert_true(uset_del(s, id));
		assert_false(uset_del(s, id));
		member[i] = false;
		want--;
	}
	for (unsigned i = 0; i < N; i += 9) {
		nth(id, i);
		assert_true(uset_add(s, id));
		assert_true(uset_add(s, id));	/* already there: counted once */
		member[i] = true;
		want++;
	}
	assert_int_equal(uset_count(s), want);
	for (unsigned i = 0; i < N; i++) {
		nth(id, i);
		assert_int_equal(uset_has(s, id), member[i]);
	}
	nth(id, N + 1);
	assert_false(uset_has(s, id));
	assert_false(uset_add(s, "not-a-uuid"));
	assert_false(uset_has(s, "not-a-uuid"));
	assert_false(uset_has(s, NULL));
	uset_free(s);
}

static void
test_churn_reuses_deleted_slots(void **state)
{
	struct uset *s = uset_new();
	char id[37];
	size_t bytes;

	(void)state;
	for (unsigned i = 0; i < 20; i++) {
		nth(id, i);
		uset_add(s, id);
	}
	/* Deletes leave tombstones: the table settles at a size, then stays. */
	for (unsigned i = 20; i < 1020; i++) {
		nth(id, i);
		uset_add(s, id);
		nth(id, i - 20);
		uset_del(s, id);
	}
	bytes = uset_bytes(s);
	assert_true(bytes <= 128 * 17);
	/* 100,000 more adds and deletes with at most 21 members: no growth. */
	for (unsigned i = 1020; i < 100020; i++) {
		nth(id, i);
		assert_true(uset_add(s, id));
		nth(id, i - 20);
		assert_true(uset_del(s, id));
	}
	assert_int_equal(uset_count(s), 20);
	assert_int_equal(uset_bytes(s), bytes);
	for (unsigned i = 100000; i < 100020; i++) {
		nth(id, i);
		assert_true(uset_has(s, id));
	}
	uset_free(s);
}

static void
test_100000_members_take_a_few_mib(void **state)
{
	struct uset *s = uset_new();
	char id[37];

	(void)state;
	for (unsigned i = 0; i < 100000; i++) {
		nth(id, i);
		uset_add(s, id);
	}
	assert_int_equal(uset_count(s), 100000);
	/* 17 bytes a slot, at most 3/4 full after doubling: < 48 bytes a member. */
	assert_true(uset_bytes(s) < 100000 * 48);
	uset_free(s);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse),
		cmocka_unit_test(test_add_has_del_against_an_array),
		cmocka_unit_test(test_churn_reuses_deleted_slots),
		cmocka_unit_test(test_100000_members_take_a_few_mib),
	};

	cmocka_set_message_output(CM_OUTPUT_TAP);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
