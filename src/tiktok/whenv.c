/*
 * whenv: envelope checks without I/O.
 */
#include "config.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "orderflow/whenv.h"

/* A string member of 1..WHENV_ID_MAX bytes without control characters, or NULL. */
static const char *
whenv_str(json_t *obj, const char *key)
{
	const char *s = json_string_value(json_object_get(obj, key));
	size_t len = s != NULL ? strlen(s) : 0;

	if (s == NULL || len == 0 || len > WHENV_ID_MAX)
		return NULL;
	for (size_t i = 0; i < len; i++)
		if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
			return NULL;
	return s;
}

/* Missing and null are the same to us. */
static bool
whenv_absent(json_t *obj, const char *key)
{
	json_t *v = json_object_get(obj, key);

	return v == NULL || json_is_null(v);
}

const char *
whenv_parse(json_t *doc, struct whenv *e)
{
	json_t *data = json_object_get(doc, "data"), *type = json_object_get(doc, "type");
	json_t *ts = json_object_get(doc, "timestamp"), *ut;

	memset(e, 0, sizeof(*e));
	if (!json_is_object(doc))
		return "the body is not a JSON object";
	if (!json_is_integer(type) || json_integer_value(type) < 0 || json_integer_value(type) > 1000000)
		return "field \"type\" must be a non-negative integer";
	if ((e->shop_id = whenv_str(doc, "shop_id")) == NULL)
		return "field \"shop_id\" must be a non-empty string";
	if (!json_is_integer(ts) || json_integer_value(ts) < 0)
		return "field \"timestamp\" must be an integer (Unix seconds)";
	if (!json_is_object(data))
		return "field \"data\" must be an object";
	e->nid = whenv_str(doc, "tts_notification_id");
	if (json_object_get(doc, "tts_notification_id") != NULL && e->nid == NULL)
		return "field \"tts_notification_id\" must be a non-empty string";
	e->type = json_integer_value(type);
	e->timestamp = json_integer_value(ts);
	e->order_id = whenv_str(data, "order_id");
	if (!whenv_absent(data, "order_id") && e->order_id == NULL)
		return "field \"data.order_id\" must be a non-empty string";
	if (e->type == WHENV_ORDER_STATUS && e->order_id == NULL)
		return "field \"data.order_id\" is required for an order status change";
	e->status = whenv_str(data, "order_status");
	ut = json_object_get(data, "update_time");
	if (!whenv_absent(data, "update_time") && (!json_is_integer(ut) || json_integer_value(ut) < 0))
		return "field \"data.update_time\" must be an integer (Unix seconds)";
	e->update_time = json_integer_value(ut);
	return NULL;
}

void
whenv_dedupe_key(const struct whenv *e, char *buf, size_t size)
{
	if (e->nid != NULL)
		snprintf(buf, size, "%s", e->nid);
	else
		snprintf(buf, size, "k:%s:%lld:%s:%lld:%s", e->shop_id, (long long)e->type,
		    e->order_id ? e->order_id : "", (long long)e->update_time,
		    e->status ? e->status : "");
}
