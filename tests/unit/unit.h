/*
 * unit.h: what the unit tests share.  Include after <cmocka.h> and
 * <jansson.h>.
 */
#ifndef ORDERFLOW_TESTS_UNIT_H
#define ORDERFLOW_TESTS_UNIT_H

#include <stdlib.h>
#include <string.h>

/*
 * text with ' turned into ", loaded as JSON (any value, duplicate keys
 * refused, and flags): JSON in a test reads better without backslashes.
 * A text that does not load fails the test.
 */
static inline json_t *
unit_json(const char *text, size_t flags)
{
	char *s = strdup(text);
	json_error_t jerr;
	json_t *v;

	if (s == NULL)
		fail_msg("out of memory");
	for (char *p = s; *p != '\0'; p++)
		if (*p == '\'')
			*p = '"';
	v = json_loads(s, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY | flags, &jerr);
	if (v == NULL)
		fail_msg("test JSON does not load: %s: %s", jerr.text, s);
	free(s);
	return v;
}

#endif
