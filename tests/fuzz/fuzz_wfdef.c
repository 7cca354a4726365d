/*
 * fuzz_wfdef: libFuzzer target for the bodies of PUT
 * /api/workflows/definitions/{name} and PUT /api/workflows/rules: the
 * definition validator (wf_def_parse, with its conditions) and the rules
 * parser (wf_rules_parse).  A refusal must say where and why; an accepted
 * definition must answer its own questions.
 *
 * Built and run by tests/fuzz/run.sh; any crash, sanitizer report or
 * failed invariant aborts.
 */
#include "config.h"

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "orderflow/wf_def.h"

#define CHECK(c) do { if (!(c)) abort(); } while (0)

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char *const known[] = { "fuzzed", "seasonal", NULL };
	struct wf_err err;
	struct wf_def *d;
	struct wf_rules *r;
	json_t *doc, *facts;

	if ((doc = json_loadb((const char *)data, size, JSON_REJECT_DUPLICATES, NULL)) == NULL)
		return 0;
	facts = json_pack("{s:s, s:f, s:i}", "order_status", "confirmed", "total_amount", 12.5,
	    "item_count", 2);
	memset(&err, 0, sizeof(err));
	if ((d = wf_def_parse(doc, "fuzzed", 1, &err)) != NULL) {
		int s = wf_def_state(d, "new");
		const struct wf_transition *t = s >= 0 ? wf_def_on(d, s, "start") : NULL;

		if (t != NULL)
			(void)wf_def_choose(t, facts);
		wf_def_unref(d);
	} else {
		CHECK(err.msg[0] != '\0' && err.path[0] == '$');
	}
	memset(&err, 0, sizeof(err));
	if ((r = wf_rules_parse(doc, known, &err)) != NULL) {
		const char *name = wf_rules_choose(r, facts);
		const char *const *builtin = wf_def_builtin_names();
		bool found = false;

		CHECK(name != NULL);
		for (int i = 0; known[i] != NULL && !found; i++)
			found = strcmp(known[i], name) == 0;
		for (int i = 0; builtin[i] != NULL && !found; i++)
			found = strcmp(builtin[i], name) == 0;
		CHECK(found);
		wf_rules_free(r);
	} else {
		CHECK(err.msg[0] != '\0');
	}
	json_decref(facts);
	json_decref(doc);
	return 0;
}
