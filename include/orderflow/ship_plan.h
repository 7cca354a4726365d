/*
 * ship_plan: the decisions of shipping that need no I/O.
 *
 * What parcel a package is (weight and size from the SKUs, else the
 * creator's default parcel; never a guess), where it goes (TikTok's
 * recipient address as the carrier wants it), which of the carrier's rates
 * the creator's rule picks, which TikTok shipping provider a carrier is,
 * and the checks of the shipping settings a creator may store.
 *
 * Pure and thread-safe; called by ship (the workflow steps), the REST
 * handlers of /api/settings/shipping and the unit tests.
 */
#ifndef ORDERFLOW_SHIP_PLAN_H
#define ORDERFLOW_SHIP_PLAN_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

/* Largest parcel the carrier takes: ounces and inches (EasyPost's limits). */
#define SP_WEIGHT_MAX	2400.0
#define SP_SIZE_MAX	1000.0
/* Bytes of a field of an address. */
#define SP_ADDR_FIELD_MAX 200

/*
 * The parcel of a package, as EasyPost's {"length", "width", "height",
 * "weight"} (inches, ounces), or NULL with the reason in why.  items: the
 * order's lines [{"sku", "quantity", "line_item_ids", "weight_oz",
 * "length_in", "width_in", "height_in"}]; lines: the TikTok line item ids
 * in the package, or NULL for every unit of the order; def: the creator's
 * default parcel {"weight_oz", "length_in", "width_in", "height_in"} or NULL.
 * Weight: the sum over the units when every SKU has one, else the
 * default's.  Size: the default's, else the SKU's when the package is a
 * single unit.
 */
json_t *sp_parcel(json_t *items, json_t *lines, json_t *def, char *why, size_t whysz);

/*
 * TikTok's recipient address (orders.shipping_address) with the buyer's
 * name, phone and e-mail, as an EasyPost address; NULL and why when a
 * street, city, postal code or country is missing.
 */
json_t *sp_to_address(json_t *addr, const char *name, const char *phone, const char *email,
    char *why, size_t whysz);

/*
 * The rate of rates (EasyPost Rate objects) the rule picks, or -1 and why.
 * rule: {"choose": "cheapest" (default) | "fastest", "carrier", "service",
 * "max_cost"}: only the carrier's (and service's) rates, at most max_cost,
 * then the cheapest (ties: the fastest) or the fastest (ties: the cheapest).
 */
int sp_choose_rate(json_t *rates, json_t *rule, char *why, size_t whysz);

/* TikTok's shipping provider id for a carrier's name (case-insensitive), or NULL. */
const char *sp_provider_id(json_t *providers, const char *carrier);

/* "7.58" -> 758; -1 when it is not a non-negative decimal with <= 2 decimals. */
long long sp_cents(const char *s);

/*
 * Checks of PUT /api/settings/shipping: NULL when valid, else the reason,
 * naming the field.  The settings are {"from_address", "parcel",
 * "rate_rule", "handover_method"}, every field optional.
 */
const char *sp_settings_invalid(json_t *settings, char *why, size_t whysz);
/* A parcel {"weight_oz", "length_in", "width_in", "height_in"} (each optional): NULL or why. */
const char *sp_parcel_invalid(json_t *parcel, char *why, size_t whysz);

#endif
