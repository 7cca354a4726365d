/*
 * whenv: the TikTok Shop webhook envelope, parsed and checked.
 *
 * {type, tts_notification_id, shop_id, timestamp, data}: every field is
 * typed and bounded here, with no I/O and no clock, so the same code
 * serves the webhook handler and the fuzz target (tests/fuzz).  Called by
 * webhook.
 */
#ifndef ORDERFLOW_WHENV_H
#define ORDERFLOW_WHENV_H

#include <jansson.h>
#include <stddef.h>

/* Longest id accepted; TikTok's are 19-digit numbers. */
#define WHENV_ID_MAX 128
/* Room for the longest dedupe key whenv_dedupe_key writes. */
#define WHENV_KEY_MAX (4 * WHENV_ID_MAX + 64)

/* Topics (type) with a meaning of their own. */
#define WHENV_ORDER_STATUS	1
#define WHENV_DEAUTHORIZED	6
#define WHENV_AUTH_EXPIRING	7

/* A checked envelope; the strings belong to the parsed document. */
struct whenv {
	json_int_t	type;
	json_int_t	timestamp;	/* Unix seconds */
	const char	*shop_id;
	const char	*nid;		/* tts_notification_id, or NULL when absent */
	const char	*order_id;	/* data.order_id, or NULL */
	const char	*status;	/* data.order_status, or NULL */
	json_int_t	update_time;	/* data.update_time, or 0 */
};

/* NULL when doc is a valid envelope (e is filled), else why it is not. */
const char *whenv_parse(json_t *doc, struct whenv *e);
/* tts_notification_id, or shop:type:order:update_time:status when it is absent. */
void whenv_dedupe_key(const struct whenv *e, char *buf, size_t size);

#endif
