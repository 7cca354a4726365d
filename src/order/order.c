/*
 * order: the status tables, the state machine and the TikTok map.
 */
#include "config.h"

#include <stdio.h>
#include <string.h>

#include "orderflow/order.h"
#include "orderflow/util.h"

const char *const order_status_names[ORDER_STATUS_COUNT + 1] = {
	"pending", "confirmed", "processing", "shipped", "delivered", "cancelled", "returned", NULL
};

const char *const order_wf_status_names[ORDER_WF_STATUS_COUNT + 1] = {
	"new", "validated", "inventory_reserved", "ready_to_ship", "shipped", "completed", "failed",
	"cancelled", NULL
};

#define B(s) (1u << (s))

/*
 * The order-status state machine: the statuses each may become.  Cancel
 * only before shipping, returned only after delivery, nothing after
 * either.  orderflowd(8) "Dashboard API" prints the same table.
 */
static const unsigned order_next[ORDER_STATUS_COUNT] = {
	[ORDER_PENDING] = B(ORDER_CONFIRMED) | B(ORDER_CANCELLED),
	[ORDER_CONFIRMED] = B(ORDER_PROCESSING) | B(ORDER_CANCELLED),
	[ORDER_PROCESSING] = B(ORDER_SHIPPED) | B(ORDER_CANCELLED),
	[ORDER_SHIPPED] = B(ORDER_DELIVERED),
	[ORDER_DELIVERED] = B(ORDER_RETURNED),
	[ORDER_CANCELLED] = 0,
	[ORDER_RETURNED] = 0,
};

/*
 * TikTok's statuses.  PARTIALLY_SHIPPING appears only in the order API;
 * both spellings of the cancellation are here, so a status read from
 * either source maps the same way.
 */
static const struct {
	const char		*tiktok;
	enum order_status	status;
	bool			before_shipping;	/* nothing has left the warehouse */
	bool			hold;		/* TikTok forbids acting on it for now */
} order_tiktok_map[] = {
	{ "UNPAID", ORDER_PENDING, true, true },
	{ "ON_HOLD", ORDER_PENDING, true, true },
	{ "AWAITING_SHIPMENT", ORDER_CONFIRMED, true, false },
	{ "PARTIALLY_SHIPPING", ORDER_PROCESSING, false, false },
	{ "AWAITING_COLLECTION", ORDER_PROCESSING, false, false },
	{ "IN_TRANSIT", ORDER_SHIPPED, false, false },
	{ "DELIVERED", ORDER_DELIVERED, false, false },
	{ "COMPLETED", ORDER_DELIVERED, false, false },
	{ "CANCELLED", ORDER_CANCELLED, false, false },
	{ "CANCEL", ORDER_CANCELLED, false, false },
};

const char *
order_status_name(int s)
{
	return s >= 0 && s < ORDER_STATUS_COUNT ? order_status_names[s] : NULL;
}

int
order_status_parse(const char *name)
{
	return util_name_index(order_status_names, ORDER_STATUS_COUNT, name);
}

const char *
order_wf_status_name(int s)
{
	return s >= 0 && s < ORDER_WF_STATUS_COUNT ? order_wf_status_names[s] : NULL;
}

int
order_wf_status_parse(const char *name)
{
	return util_name_index(order_wf_status_names, ORDER_WF_STATUS_COUNT, name);
}

const char *
order_source_name(enum order_source s)
{
	static const char *const names[] = { "system", "user", "tiktok_shop" };

	return (unsigned)s < NELEM(names) ? names[s] : "system";
}

bool
order_transition_allowed(enum order_status from, enum order_status to)
{
	if ((unsigned)from >= ORDER_STATUS_COUNT || (unsigned)to >= ORDER_STATUS_COUNT)
		return false;
	return (order_next[from] & B(to)) != 0;
}

void
order_allowed_json(enum order_status from, char *buf, size_t size)
{
	size_t len = (size_t)snprintf(buf, size, "[");

	for (int to = 0; to < ORDER_STATUS_COUNT && len < size; to++)
		if (order_transition_allowed(from, (enum order_status)to))
			len += (size_t)snprintf(buf + len, size - len, "%s\"%s\"",
			    len > 1 ? "," : "", order_status_names[to]);
	if (len < size)
		snprintf(buf + len, size - len, "]");
}

void
order_machine_json(char *buf, size_t size)
{
	char one[128];
	size_t len = (size_t)snprintf(buf, size, "{");

	for (int s = 0; s < ORDER_STATUS_COUNT && len < size; s++) {
		order_allowed_json((enum order_status)s, one, sizeof(one));
		len += (size_t)snprintf(buf + len, size - len, "%s\"%s\":%s", s ? "," : "",
		    order_status_names[s], one);
	}
	if (len < size)
		snprintf(buf + len, size - len, "}");
}

void
order_tiktok_map_json(char *buf, size_t size)
{
	size_t len = (size_t)snprintf(buf, size, "{");

	for (size_t i = 0; i < NELEM(order_tiktok_map) && len < size; i++)
		len += (size_t)snprintf(buf + len, size - len, "%s\"%s\":\"%s\"", i ? "," : "",
		    order_tiktok_map[i].tiktok, order_status_names[order_tiktok_map[i].status]);
	if (len < size)
		snprintf(buf + len, size - len, "}");
}

int
order_status_from_tiktok(const char *tiktok_status)
{
	for (size_t i = 0; tiktok_status != NULL && i < NELEM(order_tiktok_map); i++)
		if (strcmp(order_tiktok_map[i].tiktok, tiktok_status) == 0)
			return (int)order_tiktok_map[i].status;
	return -1;
}

bool
order_tiktok_before_shipping(const char *tiktok_status)
{
	for (size_t i = 0; tiktok_status != NULL && i < NELEM(order_tiktok_map); i++)
		if (strcmp(order_tiktok_map[i].tiktok, tiktok_status) == 0)
			return order_tiktok_map[i].before_shipping;
	return false;
}

bool
order_tiktok_on_hold(const char *tiktok_status)
{
	for (size_t i = 0; tiktok_status != NULL && i < NELEM(order_tiktok_map); i++)
		if (strcmp(order_tiktok_map[i].tiktok, tiktok_status) == 0)
			return order_tiktok_map[i].hold;
	return false;
}
