/*
 * wf_cond: conditions over an order's facts, as data (JSON), never code.
 *
 * A condition is one of
 *
 *   {"all": [c, ...]}            every one holds (1..16 conditions)
 *   {"any": [c, ...]}            at least one holds (1..16 conditions)
 *   {"not": c}                   c does not hold
 *   {"field": F, "op": OP, "value": V}
 *
 * nested at most WF_COND_MAX_DEPTH deep, with at most WF_COND_MAX_NODES
 * nodes in all.  The fields, their types and the operators each takes:
 *
 *   total_amount          money    eq ne lt le gt ge       V: number or decimal string, 2 decimals at most
 *   item_count            integer  eq ne lt le gt ge       V: integer (units over all lines)
 *   priority_level        integer  eq ne lt le gt ge
 *   currency              string   eq ne in not_in         V: string, or array of strings for in/not_in
 *   payment_status        string   eq ne in not_in
 *   region                string   eq ne in not_in         (shipping address region code, "US")
 *   tiktok_status         string   eq ne in not_in
 *   shipping_method       string   eq ne in not_in
 *   order_source          string   eq ne in not_in
 *   is_on_hold            boolean  eq ne                   V: true or false
 *   buyer_request_cancel  boolean  eq ne
 *   tags                  strings  contains contains_any contains_all not_contains   V: string or array
 *   skus                  strings  contains contains_any contains_all not_contains   (seller SKUs of the items)
 *
 * Strings are compared exactly (case-sensitive), at most 255 bytes each,
 * arrays hold 1..100 values.  Money is compared in cents, never as a float.
 *
 * Conditions are evaluated against an order's facts: a JSON object with
 * the fields above ("total_amount" as a decimal string such as "12.50",
 * "tags" and "skus" as arrays of strings); a field missing from the facts
 * makes every comparison on it false (and "not" true).
 *
 * Pure: no I/O, no clock, thread-safe.  Called by wf_def (transition
 * conditions), the workflow rules and the unit tests.
 */
#ifndef ORDERFLOW_WF_COND_H
#define ORDERFLOW_WF_COND_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#define WF_COND_MAX_DEPTH	8	/* nesting levels of all/any/not */
#define WF_COND_MAX_NODES	64	/* nodes of one condition, comparisons included */
#define WF_COND_MAX_LIST	100	/* values of an in/not_in/contains_* array */
#define WF_COND_MAX_STR		255	/* bytes of one string value */

/* Where a document is wrong: a JSON path ("$.states.new.on.validate.if") and why. */
struct wf_err {
	char	path[256];	/* JSONPath of the offending value, "$" for the root */
	char	msg[256];	/* what is wrong, in words fit for a client */
};

struct wf_cond;

/*
 * Parse and check v (borrowed) as a condition found at path; NULL with err
 * filled when it is not one: unknown field or operator, an operator the
 * field's type does not take, a value of the wrong type, a limit passed.
 */
struct wf_cond *wf_cond_parse(json_t *v, const char *path, struct wf_err *err);
/* Whether c holds for facts (an object, borrowed). */
bool wf_cond_eval(const struct wf_cond *c, json_t *facts);
void wf_cond_free(struct wf_cond *c);

/*
 * Fill err: path is copied as it is (it holds the client's keys, so it is
 * never a format), the message is printf-formatted.  Returns NULL so
 * callers can write return wf_err_set(...).
 */
void *wf_err_set(struct wf_err *err, const char *path, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* wf_err_set for functions that return bool: fill err, return false. */
bool wf_err_fail(struct wf_err *err, const char *path, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* A path into buf from a format; a path too long is cut, which is harmless. */
void wf_err_path(char *buf, size_t size, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* parent.key, or parent["key"] (escaped) when key is not a plain identifier. */
void wf_err_key_path(char *buf, size_t size, const char *parent, const char *key);

#endif
