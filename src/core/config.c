/*
 * config: the key table, the INI parser glue, and validation.
 *
 * Defaults are text fed through the same parser as the file, so a default
 * can never be out of its own bounds without the unit tests noticing.
 * Errors name FILE:LINE, the key and the reason, and the first one wins.
 */
#include "config.h"

#include <errno.h>
#include <ini.h>
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "orderflow/config.h"
#include "orderflow/log.h"

enum config_type {
	CONFIG_INT,		/* decimal integer */
	CONFIG_SIZE,		/* bytes, optional k or m suffix */
	CONFIG_DURATION,	/* ms|s|min|h suffix, bare number = seconds; stored in ms */
	CONFIG_STRING,		/* any text */
	CONFIG_IP,		/* IPv4/IPv6 literal: names would need a blocking lookup */
	CONFIG_LEVEL,		/* log level name */
	CONFIG_CONNINFO,	/* libpq conninfo whose hosts need no name lookup */
	CONFIG_URL,		/* http:// or https:// base URL */
	CONFIG_FACTOR,		/* decimal with at most 2 decimals ("1.5"); stored x100 */
};

#define CONFIG_RESTART	0x01	/* a reload cannot change it */

/* Types stored as an allocated string rather than a number. */
static bool
config_is_text(enum config_type t)
{
	return t == CONFIG_STRING || t == CONFIG_IP || t == CONFIG_CONNINFO || t == CONFIG_URL;
}

struct config_key {
	const char	*section;
	const char	*name;
	enum config_type type;
	const char	*def;		/* default, as it would be written in the file */
	int64_t		min, max;	/* bounds for numbers (ms for durations) */
	size_t		offset;		/* field in struct config */
	int		flags;		/* CONFIG_RESTART */
};

#define OFF(f) offsetof(struct config, f)
#define MS(x) ((int64_t)(x))
#define SEC(x) ((int64_t)(x) * 1000)

/* One row per key; tests/optscan.sh reads the rows that start with { "section", "key",. */
static const struct config_key config_keys[] = {
	{ "server", "listen_addr", CONFIG_IP, "127.0.0.1", 0, 0, OFF(server.listen_addr), CONFIG_RESTART },
	{ "server", "listen_port", CONFIG_INT, "8080", 1, 65535, OFF(server.listen_port), CONFIG_RESTART },
	{ "server", "workers", CONFIG_INT, "0", 0, 64, OFF(server.workers), CONFIG_RESTART },
	{ "server", "listen_backlog", CONFIG_INT, "511", 1, 65535, OFF(server.listen_backlog), CONFIG_RESTART },
	{ "server", "max_body_size", CONFIG_SIZE, "1m", 1024, 64 << 20, OFF(server.max_body_size), 0 },
	{ "server", "max_header_size", CONFIG_SIZE, "16k", 1024, 1 << 20, OFF(server.max_header_size), 0 },
	{ "server", "client_timeout", CONFIG_DURATION, "30s", SEC(1), SEC(3600), OFF(server.client_timeout), 0 },
	{ "server", "shutdown_timeout", CONFIG_DURATION, "10s", 0, SEC(3600), OFF(server.shutdown_timeout), 0 },
	{ "log", "level", CONFIG_LEVEL, "info", 0, 0, OFF(log.level), 0 },
	{ "postgres", "conninfo", CONFIG_CONNINFO, "host=/var/run/postgresql dbname=orderflow", 0, 0, OFF(postgres.conninfo), CONFIG_RESTART },
	{ "postgres", "pool_size", CONFIG_INT, "4", 1, 256, OFF(postgres.pool_size), CONFIG_RESTART },
	{ "postgres", "max_wait_queue", CONFIG_INT, "1024", 0, 1000000, OFF(postgres.max_wait_queue), 0 },
	{ "postgres", "connect_timeout", CONFIG_DURATION, "5s", MS(100), SEC(300), OFF(postgres.connect_timeout), 0 },
	{ "postgres", "query_timeout", CONFIG_DURATION, "10s", MS(100), SEC(3600), OFF(postgres.query_timeout), 0 },
	{ "postgres", "reconnect_min", CONFIG_DURATION, "100ms", MS(10), SEC(60), OFF(postgres.reconnect_min), 0 },
	{ "postgres", "reconnect_max", CONFIG_DURATION, "5s", MS(100), SEC(600), OFF(postgres.reconnect_max), 0 },
	{ "postgres", "migrations_dir", CONFIG_STRING, OF_PKGDATADIR "/sql", 0, 0, OFF(postgres.migrations_dir), 0 },
	{ "redis", "host", CONFIG_IP, "127.0.0.1", 0, 0, OFF(redis.host), CONFIG_RESTART },
	{ "redis", "port", CONFIG_INT, "6379", 1, 65535, OFF(redis.port), CONFIG_RESTART },
	{ "redis", "socket", CONFIG_STRING, "", 0, 0, OFF(redis.socket), CONFIG_RESTART },
	{ "redis", "db", CONFIG_INT, "0", 0, 255, OFF(redis.db), CONFIG_RESTART },
	{ "redis", "password", CONFIG_STRING, "", 0, 0, OFF(redis.password), CONFIG_RESTART },
	{ "redis", "connect_timeout", CONFIG_DURATION, "2s", MS(100), SEC(300), OFF(redis.connect_timeout), 0 },
	{ "redis", "command_timeout", CONFIG_DURATION, "2s", MS(100), SEC(300), OFF(redis.command_timeout), 0 },
	{ "redis", "reconnect_min", CONFIG_DURATION, "100ms", MS(10), SEC(60), OFF(redis.reconnect_min), 0 },
	{ "redis", "reconnect_max", CONFIG_DURATION, "5s", MS(100), SEC(600), OFF(redis.reconnect_max), 0 },
	{ "health", "max_queue_depth", CONFIG_INT, "1000", 1, 100000000, OFF(health.max_queue_depth), 0 },
	{ "health", "max_queue_age", CONFIG_DURATION, "60s", SEC(1), SEC(86400), OFF(health.max_queue_age), 0 },
	{ "webhook", "max_age", CONFIG_DURATION, "1h", 0, SEC(30 * 86400), OFF(webhook.max_age), 0 },
	{ "webhook", "max_skew", CONFIG_DURATION, "5min", 0, SEC(86400), OFF(webhook.max_skew), 0 },
	{ "webhook", "max_batch", CONFIG_INT, "512", 1, 10000, OFF(webhook.max_batch), 0 },
	{ "webhook", "shop_refresh", CONFIG_DURATION, "10s", SEC(1), SEC(3600), OFF(webhook.shop_refresh), 0 },
	{ "webhook", "retention", CONFIG_DURATION, "720h", 0, SEC(3650LL * 86400), OFF(webhook.retention), 0 },
	{ "www", "root", CONFIG_STRING, OF_PKGDATADIR "/www", 0, 0, OFF(www.root), 0 },
	{ "events", "poll_interval", CONFIG_DURATION, "200ms", MS(10), SEC(60), OFF(events.poll_interval), 0 },
	{ "events", "heartbeat", CONFIG_DURATION, "15s", SEC(1), SEC(3600), OFF(events.heartbeat), 0 },
	{ "events", "retention", CONFIG_DURATION, "24h", SEC(60), SEC(90LL * 86400), OFF(events.retention), 0 },
	{ "events", "max_streams", CONFIG_INT, "10000", 0, 1000000, OFF(events.max_streams), 0 },
	{ "events", "max_streams_per_creator", CONFIG_INT, "20", 1, 100000, OFF(events.max_streams_per_creator), 0 },
	{ "events", "max_buffer", CONFIG_SIZE, "256k", 4096, 64 << 20, OFF(events.max_buffer), 0 },
	{ "tiktok", "api_base", CONFIG_URL, "https://open-api.tiktokglobalshop.com", 0, 0, OFF(tiktok.api_base), CONFIG_RESTART },
	{ "tiktok", "ca_file", CONFIG_STRING, "", 0, 0, OFF(tiktok.ca_file), CONFIG_RESTART },
	{ "tiktok", "connections", CONFIG_INT, "4", 1, 256, OFF(tiktok.connections), CONFIG_RESTART },
	{ "tiktok", "connect_timeout", CONFIG_DURATION, "5s", MS(100), SEC(300), OFF(tiktok.connect_timeout), CONFIG_RESTART },
	{ "tiktok", "request_timeout", CONFIG_DURATION, "10s", MS(100), SEC(600), OFF(tiktok.request_timeout), CONFIG_RESTART },
	{ "tiktok", "detail_batch", CONFIG_INT, "50", 1, 50, OFF(tiktok.detail_batch), 0 },
	{ "tiktok", "retry_attempts", CONFIG_INT, "5", 1, 20, OFF(tiktok.retry_attempts), 0 },
	{ "tiktok", "retry_base", CONFIG_DURATION, "1s", MS(10), SEC(600), OFF(tiktok.retry_base), 0 },
	{ "tiktok", "retry_max", CONFIG_DURATION, "30s", MS(10), SEC(3600), OFF(tiktok.retry_max), 0 },
	{ "tiktok", "breaker_threshold", CONFIG_INT, "10", 1, 64, OFF(tiktok.breaker_threshold), CONFIG_RESTART },
	{ "tiktok", "breaker_window", CONFIG_DURATION, "30s", SEC(1), SEC(3600), OFF(tiktok.breaker_window), CONFIG_RESTART },
	{ "tiktok", "breaker_reset", CONFIG_DURATION, "60s", MS(100), SEC(3600), OFF(tiktok.breaker_reset), CONFIG_RESTART },
	{ "tiktok", "max_queue", CONFIG_INT, "100000", 100, 10000000, OFF(tiktok.max_queue), 0 },
	{ "tiktok", "lease", CONFIG_DURATION, "5min", SEC(1), SEC(86400), OFF(tiktok.lease), 0 },
	{ "tiktok", "claim_interval", CONFIG_DURATION, "5s", MS(100), SEC(3600), OFF(tiktok.claim_interval), 0 },
	{ "tiktok", "sync_interval", CONFIG_DURATION, "60s", 0, SEC(86400), OFF(tiktok.sync_interval), 0 },
	{ "tiktok", "sync_margin", CONFIG_DURATION, "5min", 0, SEC(86400), OFF(tiktok.sync_margin), 0 },
	{ "tiktok", "sync_lookback", CONFIG_DURATION, "24h", SEC(1), SEC(15 * 86400), OFF(tiktok.sync_lookback), 0 },
	{ "tiktok", "sync_page_size", CONFIG_INT, "50", 1, 100, OFF(tiktok.sync_page_size), 0 },
	{ "tiktok", "app_key", CONFIG_STRING, "", 0, 0, OFF(tiktok.app_key), 0 },
	{ "tiktok", "app_secret_file", CONFIG_STRING, "", 0, 0, OFF(tiktok.app_secret_file), 0 },
	{ "tiktok", "service_id", CONFIG_STRING, "", 0, 0, OFF(tiktok.service_id), 0 },
	{ "tiktok", "authorize_url", CONFIG_URL, "https://services.tiktokshop.com/open/authorize", 0, 0, OFF(tiktok.authorize_url), 0 },
	{ "tiktok", "auth_base", CONFIG_URL, "https://auth.tiktok-shops.com", 0, 0, OFF(tiktok.auth_base), CONFIG_RESTART },
	{ "tiktok", "connect_done_url", CONFIG_STRING, "", 0, 0, OFF(tiktok.connect_done_url), 0 },
	{ "tiktok", "state_lifetime", CONFIG_DURATION, "10min", SEC(1), SEC(3600), OFF(tiktok.state_lifetime), 0 },
	{ "tiktok", "token_refresh_margin", CONFIG_DURATION, "24h", SEC(1), SEC(30 * 86400), OFF(tiktok.token_refresh_margin), 0 },
	{ "tiktok", "token_lease", CONFIG_DURATION, "30s", SEC(1), SEC(600), OFF(tiktok.token_lease), 0 },
	{ "admin", "token", CONFIG_STRING, "", 0, 0, OFF(admin.token), 0 },
	{ "auth", "jwt_secret", CONFIG_STRING, "", 0, 0, OFF(auth.jwt_secret), 0 },
	{ "auth", "jwt_audience", CONFIG_STRING, "", 0, 0, OFF(auth.jwt_audience), 0 },
	{ "auth", "jwt_leeway", CONFIG_DURATION, "30s", 0, SEC(300), OFF(auth.jwt_leeway), 0 },
	{ "auth", "api_key_ttl", CONFIG_DURATION, "10s", 0, SEC(3600), OFF(auth.api_key_ttl), 0 },
	{ "auth", "failure_burst", CONFIG_INT, "20", 0, 1000000, OFF(auth.failure_burst), 0 },
	{ "auth", "failure_refill", CONFIG_DURATION, "1s", MS(10), SEC(3600), OFF(auth.failure_refill), 0 },
	{ "ratelimit", "rate", CONFIG_INT, "50", 0, 1000000, OFF(ratelimit.rate), 0 },
	{ "ratelimit", "burst", CONFIG_INT, "100", 1, 10000000, OFF(ratelimit.burst), 0 },
	{ "api", "order_cache_ttl", CONFIG_DURATION, "30s", 0, SEC(86400), OFF(api.order_cache_ttl), 0 },
	{ "api", "max_bulk", CONFIG_INT, "10000", 1, 10000, OFF(api.max_bulk), 0 },
	{ "workflow", "retry_attempts", CONFIG_INT, "3", 1, 20, OFF(workflow.retry_attempts), 0 },
	{ "workflow", "retry_base", CONFIG_DURATION, "2s", MS(10), SEC(3600), OFF(workflow.retry_base), 0 },
	{ "workflow", "retry_max", CONFIG_DURATION, "60s", MS(10), SEC(86400), OFF(workflow.retry_max), 0 },
	{ "workflow", "retry_multiplier", CONFIG_FACTOR, "1.5", 100, 1000, OFF(workflow.retry_multiplier), 0 },
	{ "workflow", "lease", CONFIG_DURATION, "5min", SEC(5), SEC(86400), OFF(workflow.lease), 0 },
	{ "workflow", "claim_interval", CONFIG_DURATION, "1s", MS(50), SEC(3600), OFF(workflow.claim_interval), 0 },
	{ "workflow", "max_batch", CONFIG_INT, "500", 1, 5000, OFF(workflow.max_batch), 0 },
	{ "workflow", "rules_cache", CONFIG_DURATION, "5s", 0, SEC(3600), OFF(workflow.rules_cache), 0 },
	{ "workflow", "stock_recheck", CONFIG_DURATION, "10s", SEC(1), SEC(3600), OFF(workflow.stock_recheck), 0 },
	{ "workflow", "max_due_age", CONFIG_DURATION, "60s", SEC(1), SEC(86400), OFF(workflow.max_due_age), 0 },
	{ "inventory", "retry_attempts", CONFIG_INT, "2", 1, 20, OFF(inventory.retry_attempts), 0 },
	{ "carrier", "api_base", CONFIG_URL, "https://api.easypost.com/v2", 0, 0, OFF(carrier.api_base), CONFIG_RESTART },
	{ "carrier", "api_key_file", CONFIG_STRING, "", 0, 0, OFF(carrier.api_key_file), 0 },
	{ "carrier", "webhook_secret_file", CONFIG_STRING, "", 0, 0, OFF(carrier.webhook_secret_file), 0 },
	{ "carrier", "ca_file", CONFIG_STRING, "", 0, 0, OFF(carrier.ca_file), CONFIG_RESTART },
	{ "carrier", "connections", CONFIG_INT, "4", 1, 256, OFF(carrier.connections), CONFIG_RESTART },
	{ "carrier", "connect_timeout", CONFIG_DURATION, "5s", MS(100), SEC(300), OFF(carrier.connect_timeout), CONFIG_RESTART },
	{ "carrier", "request_timeout", CONFIG_DURATION, "20s", MS(100), SEC(600), OFF(carrier.request_timeout), CONFIG_RESTART },
	{ "carrier", "breaker_threshold", CONFIG_INT, "5", 1, 64, OFF(carrier.breaker_threshold), CONFIG_RESTART },
	{ "carrier", "breaker_window", CONFIG_DURATION, "30s", SEC(1), SEC(3600), OFF(carrier.breaker_window), CONFIG_RESTART },
	{ "carrier", "breaker_reset", CONFIG_DURATION, "30s", MS(100), SEC(3600), OFF(carrier.breaker_reset), CONFIG_RESTART },
	{ "shipping", "retry_attempts", CONFIG_INT, "6", 1, 50, OFF(shipping.retry_attempts), 0 },
	{ "shipping", "retry_base", CONFIG_DURATION, "2s", MS(10), SEC(3600), OFF(shipping.retry_base), 0 },
	{ "shipping", "retry_max", CONFIG_DURATION, "2min", MS(10), SEC(86400), OFF(shipping.retry_max), 0 },
	{ "shipping", "sla_warning", CONFIG_DURATION, "12h", 0, SEC(30 * 86400), OFF(shipping.sla_warning), 0 },
	{ "shipping", "provider_cache", CONFIG_DURATION, "1h", SEC(1), SEC(7 * 86400), OFF(shipping.provider_cache), 0 },
	{ "inventory", "retry_base", CONFIG_DURATION, "500ms", MS(10), SEC(3600), OFF(inventory.retry_base), 0 },
	{ "inventory", "retry_max", CONFIG_DURATION, "5s", MS(10), SEC(86400), OFF(inventory.retry_max), 0 },
	{ "inventory", "retry_multiplier", CONFIG_FACTOR, "2", 100, 1000, OFF(inventory.retry_multiplier), 0 },
	{ "inventory", "breaker_threshold", CONFIG_INT, "5", 1, 64, OFF(inventory.breaker_threshold), CONFIG_RESTART },
	{ "inventory", "breaker_window", CONFIG_DURATION, "15s", SEC(1), SEC(3600), OFF(inventory.breaker_window), CONFIG_RESTART },
	{ "inventory", "breaker_reset", CONFIG_DURATION, "30s", MS(100), SEC(3600), OFF(inventory.breaker_reset), CONFIG_RESTART },
};

/* State of one parse: the config being filled and the first error. */
struct config_parse {
	struct config	*cfg;
	const char	*name;			/* file name for messages */
	int		lines[NELEM(config_keys)]; /* line that set each key, 0 = default */
	int		line;			/* current line, counted by our reader */
	char		*cause;			/* first error, "section.key: reason" */
	int		cause_line;
};

static const char *const config_level_names[] = { "error", "warn", "info", "debug" };

static int64_t *
config_num(struct config *cfg, const struct config_key *k)
{
	return (int64_t *)(void *)((char *)cfg + k->offset);
}

static char **
config_str(struct config *cfg, const struct config_key *k)
{
	return (char **)(void *)((char *)cfg + k->offset);
}

/* Parse a whole decimal integer with an optional unit suffix into *out. */
static bool
config_parse_number(const char *value, int64_t *out, const char **unit)
{
	char *end;
	long long v;

	if (value[0] == '\0' || value[0] == '+' || value[0] == ' ')
		return false;
	errno = 0;
	v = strtoll(value, &end, 10);
	if (errno != 0 || end == value)
		return false;
	*out = v;
	*unit = end;
	return true;
}

static char *
config_parse_duration(const char *value, int64_t *ms)
{
	static const struct { const char *unit; int64_t mult; } units[] = {
		{ "", 1000 }, { "ms", 1 }, { "s", 1000 }, { "min", 60000 }, { "h", 3600000 },
	};
	const char *unit;
	int64_t v;

	if (!config_parse_number(value, &v, &unit))
		return xasprintf("not a duration: \"%s\" (write e.g. 500ms, 30s, 5min, 1h)", value);
	for (size_t i = 0; i < NELEM(units); i++) {
		if (strcmp(unit, units[i].unit) != 0)
			continue;
		if (v < 0 || v > INT64_MAX / units[i].mult)
			return xasprintf("duration out of range: \"%s\"", value);
		*ms = v * units[i].mult;
		return NULL;
	}
	return xasprintf("unknown duration unit \"%s\" in \"%s\" (use ms, s, min or h)", unit, value);
}

/* "1.5" -> 150: at most 2 decimals, so the value is exact. */
static char *
config_parse_factor(const char *value, int64_t *x100)
{
	const char *dot = strchr(value, '.');
	size_t intlen = strspn(value, "0123456789"), frac = dot != NULL ? strlen(dot + 1) : 0;
	int64_t v = 0;

	if (intlen == 0 || intlen > 6 || (dot == NULL && value[intlen] != '\0') ||
	    (dot != NULL && (dot != value + intlen || frac == 0 || frac > 2 ||
	    strspn(dot + 1, "0123456789") != frac)))
		return xasprintf("not a decimal number with at most 2 decimals: \"%s\"", value);
	for (size_t i = 0; i < intlen; i++)
		v = v * 10 + (value[i] - '0');
	v *= 100;
	if (dot != NULL)
		v += (dot[1] - '0') * 10 + (frac == 2 ? dot[2] - '0' : 0);
	*x100 = v;
	return NULL;
}

static char *
config_parse_size(const char *value, int64_t *bytes)
{
	const char *unit;
	int64_t v, mult;

	if (!config_parse_number(value, &v, &unit))
		return xasprintf("not a size: \"%s\" (write e.g. 4096, 16k, 1m)", value);
	if (unit[0] == '\0')
		mult = 1;
	else if (strcmp(unit, "k") == 0 || strcmp(unit, "K") == 0)
		mult = 1024;
	else if (strcmp(unit, "m") == 0 || strcmp(unit, "M") == 0)
		mult = 1024 * 1024;
	else
		return xasprintf("unknown size unit \"%s\" in \"%s\" (use k or m)", unit, value);
	if (v < 0 || v > INT64_MAX / mult)
		return xasprintf("size out of range: \"%s\"", value);
	*bytes = v * mult;
	return NULL;
}

/* Hosts in a conninfo must be socket directories or IP literals. */
static char *
config_check_conninfo(const char *value)
{
	PQconninfoOption *opts, *o;
	const char *host = NULL, *hostaddr = NULL;
	char *err = NULL, *cause = NULL, *hosts, *h, *save;

	opts = PQconninfoParse(value, &err);
	if (opts == NULL) {
		cause = xasprintf("invalid conninfo: %s", err != NULL ? err : "out of memory");
		if (err != NULL) {
			cause[strcspn(cause, "\n")] = '\0';
			PQfreemem(err);
		}
		return cause;
	}
	for (o = opts; o->keyword != NULL; o++) {
		if (o->val != NULL && strcmp(o->keyword, "host") == 0)
			host = o->val;
		else if (o->val != NULL && strcmp(o->keyword, "hostaddr") == 0)
			hostaddr = o->val;
	}
	if (host != NULL && (hostaddr == NULL || hostaddr[0] == '\0')) {
		hosts = xstrdup(host);
		for (h = strtok_r(hosts, ",", &save); h != NULL && cause == NULL;
		    h = strtok_r(NULL, ",", &save)) {
			if (h[0] != '/' && h[0] != '@' && !util_is_ip_literal(h))
				cause = xasprintf("host \"%s\" is a name: use an IP literal, "
				    "hostaddr= or a socket directory (a name lookup would block)", h);
		}
		free(hosts);
	}
	PQconninfoFree(opts);
	return cause;
}

/* A base URL: scheme, a host, an optional port and path; no query, no spaces. */
static char *
config_check_url(const char *value)
{
	const char *host;

	if (strncmp(value, "https://", 8) == 0)
		host = value + 8;
	else if (strncmp(value, "http://", 7) == 0)
		host = value + 7;
	else
		return xasprintf("\"%s\" is not an http:// or https:// URL", value);
	if (host[0] == '\0' || host[0] == '/' || host[0] == ':')
		return xasprintf("\"%s\" has no host", value);
	if (strlen(value) > 1024)
		return xstrdup("URL longer than 1024 bytes");
	for (const char *c = value; *c != '\0'; c++)
		if ((unsigned char)*c <= 0x20 || *c == '?' || *c == '#' || (unsigned char)*c >= 0x7f)
			return xasprintf("\"%s\" contains a space, query, fragment or non-ASCII byte",
			    value);
	return NULL;
}

/* Parse value into the key's field; returns NULL or the reason it is bad. */
static char *
config_set(struct config *cfg, const struct config_key *k, const char *value)
{
	const char *unit;
	char *cause = NULL;
	int64_t v = 0;

	switch (k->type) {
	case CONFIG_INT:
		if (!config_parse_number(value, &v, &unit) || unit[0] != '\0')
			return xasprintf("not an integer: \"%s\"", value);
		break;
	case CONFIG_SIZE:
		cause = config_parse_size(value, &v);
		break;
	case CONFIG_DURATION:
		cause = config_parse_duration(value, &v);
		break;
	case CONFIG_FACTOR:
		cause = config_parse_factor(value, &v);
		break;
	case CONFIG_LEVEL:
		for (v = 0; v < (int64_t)NELEM(config_level_names); v++)
			if (strcmp(value, config_level_names[v]) == 0)
				break;
		if (v == (int64_t)NELEM(config_level_names))
			return xasprintf("unknown level \"%s\" (use error, warn, info or debug)", value);
		*config_num(cfg, k) = v;
		return NULL;
	case CONFIG_IP:
		if (!util_is_ip_literal(value))
			return xasprintf("not an IP address: \"%s\" (names are not looked up)", value);
		/* FALLTHROUGH */
	case CONFIG_STRING:
	case CONFIG_CONNINFO:
	case CONFIG_URL:
		if (k->type == CONFIG_CONNINFO && (cause = config_check_conninfo(value)) != NULL)
			return cause;
		if (k->type == CONFIG_URL && (cause = config_check_url(value)) != NULL)
			return cause;
		free(*config_str(cfg, k));
		*config_str(cfg, k) = xstrdup(value);
		return NULL;
	}
	if (cause != NULL)
		return cause;
	if (v < k->min || v > k->max)
		return k->type == CONFIG_FACTOR ?
		    xasprintf("\"%s\" is out of range (%lld.%02lld..%lld.%02lld)", value,
		    (long long)(k->min / 100), (long long)(k->min % 100), (long long)(k->max / 100),
		    (long long)(k->max % 100)) :
		    xasprintf("\"%s\" is out of range (%lld..%lld%s)", value,
		    (long long)k->min, (long long)k->max, k->type == CONFIG_DURATION ? " ms" :
		    k->type == CONFIG_SIZE ? " bytes" : "");
	*config_num(cfg, k) = v;
	return NULL;
}

static const struct config_key *
config_find(const char *section, const char *name, size_t *idx)
{
	for (size_t i = 0; i < NELEM(config_keys); i++) {
		if (strcmp(config_keys[i].section, section) == 0 &&
		    strcmp(config_keys[i].name, name) == 0) {
			*idx = i;
			return &config_keys[i];
		}
	}
	return NULL;
}

static bool
config_section_known(const char *section)
{
	for (size_t i = 0; i < NELEM(config_keys); i++)
		if (strcmp(config_keys[i].section, section) == 0)
			return true;
	return false;
}

static void
config_fail(struct config_parse *p, int line, char *cause)
{
	if (p->cause == NULL) {
		p->cause = cause;
		p->cause_line = line;
	} else {
		free(cause);
	}
}

/* inih calls this for every key = value line. */
static int
config_ini_handler(void *user, const char *section, const char *name, const char *value)
{
	struct config_parse *p = user;
	const struct config_key *k;
	char *reason, *unquoted = NULL;
	size_t idx, len = strlen(value);

	if (section[0] == '\0') {
		config_fail(p, p->line, xasprintf("%s: key outside of any [section]", name));
		return 0;
	}
	if (!config_section_known(section)) {
		config_fail(p, p->line, xasprintf("[%s]: unknown section", section));
		return 0;
	}
	if ((k = config_find(section, name, &idx)) == NULL) {
		config_fail(p, p->line, xasprintf("%s.%s: unknown key", section, name));
		return 0;
	}
	if (p->lines[idx] != 0) {
		config_fail(p, p->line, xasprintf("%s.%s: duplicate key (first set on line %d)",
		    section, name, p->lines[idx]));
		return 0;
	}
	if (len >= 2 && value[0] == '"' && value[len - 1] == '"')
		value = unquoted = xstrndup(value + 1, len - 2);
	reason = config_set(p->cfg, k, value);
	free(unquoted);
	if (reason != NULL) {
		config_fail(p, p->line, xasprintf("%s.%s: %s", section, name, reason));
		free(reason);
		return 0;
	}
	p->lines[idx] = p->line;
	return 1;
}

/* Reader state for inih: hands out one line at a time and counts lines. */
struct config_reader {
	struct config_parse	*p;
	const char		*next;
};

static char *
config_ini_reader(char *buf, int size, void *stream)
{
	struct config_reader *r = stream;
	size_t len;

	if (*r->next == '\0')
		return NULL;
	len = strcspn(r->next, "\n");
	if (r->next[len] == '\n')
		len++;
	if (len >= (size_t)size)
		len = (size_t)size - 1;	/* cannot happen: lines were checked */
	memcpy(buf, r->next, len);
	buf[len] = '\0';
	r->next += len;
	r->p->line++;
	return buf;
}

/* Checks the handler cannot make: bounds between keys. */
static void
config_check_pairs(struct config_parse *p)
{
	static const struct { const char *section, *lo, *hi; } pairs[] = {
		{ "postgres", "reconnect_min", "reconnect_max" },
		{ "redis", "reconnect_min", "reconnect_max" },
		{ "tiktok", "retry_base", "retry_max" },
		{ "workflow", "retry_base", "retry_max" },
		{ "inventory", "retry_base", "retry_max" },
		{ "shipping", "retry_base", "retry_max" },
	};
	size_t ilo, ihi;

	for (size_t i = 0; i < NELEM(pairs); i++) {
		const struct config_key *lo = config_find(pairs[i].section, pairs[i].lo, &ilo);
		const struct config_key *hi = config_find(pairs[i].section, pairs[i].hi, &ihi);

		if (*config_num(p->cfg, lo) > *config_num(p->cfg, hi))
			config_fail(p, p->lines[ihi] ? p->lines[ihi] : p->lines[ilo],
			    xasprintf("%s.%s: must not be below %s.%s", pairs[i].section,
			    pairs[i].hi, pairs[i].section, pairs[i].lo));
	}
}

/* A done URL, when set, is a URL; connecting needs the key, the secret and the service id together. */
static void
config_check_connect(struct config_parse *p)
{
	const struct config *c = p->cfg;
	size_t idx;
	char *why;
	int set;

	if (c->tiktok.connect_done_url[0] != '\0' &&
	    (why = config_check_url(c->tiktok.connect_done_url)) != NULL) {
		config_find("tiktok", "connect_done_url", &idx);
		config_fail(p, p->lines[idx], xasprintf("tiktok.connect_done_url: %s", why));
		free(why);
		return;
	}
	set = (c->tiktok.app_key[0] != '\0') + (c->tiktok.app_secret_file[0] != '\0') +
	    (c->tiktok.service_id[0] != '\0');
	if (set != 0 && set != 3) {
		config_find("tiktok", "app_key", &idx);
		config_fail(p, p->lines[idx], xstrdup("tiktok.app_key, tiktok.app_secret_file and "
		    "tiktok.service_id go together: set all three to connect shops, or none"));
	}
}

/* Secret files: read at load, so a reload picks up a rotated key. */
static const struct {
	const char *section, *name;
	size_t	offset;		/* where the contents go */
} config_secrets[] = {
	{ "carrier", "api_key_file", OFF(carrier.api_key) },
	{ "carrier", "webhook_secret_file", OFF(carrier.webhook_secret) },
	{ "tiktok", "app_secret_file", OFF(tiktok.app_secret) },
};

/* The secret in path: its first line, 1..CONFIG_SECRET_MAX bytes; NULL and *why when unusable. */
static char *
config_read_secret(const char *path, char **why)
{
	char buf[CONFIG_SECRET_MAX + 2];
	struct stat st;
	size_t len;
	FILE *f;

	if ((f = fopen(path, "r")) == NULL) {
		*why = xasprintf("%s: %s", path, strerror(errno));
		return NULL;
	}
	if (fstat(fileno(f), &st) == 0 && (st.st_mode & S_IROTH)) {
		fclose(f);
		*why = xasprintf("%s is readable by every user: chmod o-r it", path);
		return NULL;
	}
	len = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[len] = '\0';
	buf[strcspn(buf, "\r\n")] = '\0';
	if ((len = strlen(buf)) > CONFIG_SECRET_MAX || len == 0) {
		*why = xasprintf("%s: the secret must be one line of 1..%d bytes", path,
		    CONFIG_SECRET_MAX);
		return NULL;
	}
	return xstrdup(buf);
}

static void
config_load_secrets(struct config_parse *p)
{
	for (size_t i = 0; i < NELEM(config_secrets) && p->cause == NULL; i++) {
		size_t idx;
		const struct config_key *k = config_find(config_secrets[i].section,
		    config_secrets[i].name, &idx);
		const char *path = *config_str(p->cfg, k);
		char **dst = (char **)((char *)p->cfg + config_secrets[i].offset), *why = NULL;

		if (path[0] == '\0')
			continue;
		if ((*dst = config_read_secret(path, &why)) == NULL)
			config_fail(p, p->lines[idx], xasprintf("%s.%s: %s", k->section, k->name, why));
		free(why);
	}
}

static void
config_free(struct config *cfg)
{
	for (size_t i = 0; i < NELEM(config_keys); i++) {
		enum config_type t = config_keys[i].type;

		if (config_is_text(t))
			free(*config_str(cfg, &config_keys[i]));
	}
	for (size_t i = 0; i < NELEM(config_secrets); i++)
		free(*(char **)((char *)cfg + config_secrets[i].offset));
	if (cfg->site != NULL && cfg->site_free != NULL)
		cfg->site_free(cfg->site);
	free(cfg->path);
	free(cfg);
}

/* A config holding every default; the defaults are valid by construction (tested). */
static struct config *
config_new_defaults(const char *name)
{
	struct config *cfg = xcalloc(1, sizeof(*cfg));

	atomic_init(&cfg->refs, 1);
	cfg->path = xstrdup(name);
	for (size_t i = 0; i < NELEM(config_keys); i++) {
		char *reason = config_set(cfg, &config_keys[i], config_keys[i].def);

		if (reason != NULL) {
			fprintf(stderr, "orderflowd: bad built-in default for %s.%s: %s\n",
			    config_keys[i].section, config_keys[i].name, reason);
			abort();
		}
	}
	return cfg;
}

/* Reject lines inih would silently split, and NUL bytes it would stop at. */
static char *
config_check_lines(const char *text, size_t len)
{
	int line = 1;
	size_t start = 0;

	for (size_t i = 0; i <= len; i++) {
		if (i < len && text[i] == '\0')
			return xasprintf("%d: NUL byte in file", line);
		if (i == len || text[i] == '\n') {
			if (i - start > CONFIG_LINE_MAX)
				return xasprintf("%d: line longer than %d bytes", line, CONFIG_LINE_MAX);
			line++;
			start = i + 1;
		}
	}
	return NULL;
}

static struct config *
config_parse_text(const char *text, size_t len, const char *name, char **cause)
{
	struct config_parse p = { .name = name };
	struct config_reader r = { .p = &p, .next = text };
	char *bad;
	int rc;

	if ((bad = config_check_lines(text, len)) != NULL) {
		*cause = xasprintf("%s:%s", name, bad);
		free(bad);
		return NULL;
	}
	p.cfg = config_new_defaults(name);
	/* Debian's inih exposes its build options; pin the ones we document. */
	ini_allow_multiline = false;
	ini_allow_inline_comments = false;
	ini_stop_on_first_error = true;
	ini_use_stack = false;
	ini_allow_realloc = false;
	ini_max_line = CONFIG_LINE_MAX + 3;
	rc = ini_parse_stream(config_ini_reader, &r, config_ini_handler, &p);
	if (rc == 0)
		config_check_pairs(&p);
	if (rc == 0 && p.cause == NULL)
		config_check_connect(&p);
	if (rc == 0 && p.cause == NULL)
		config_load_secrets(&p);
	if (rc != 0 && p.cause == NULL) {
		if (rc > 0)
			config_fail(&p, rc, xstrdup("syntax error: expected \"key = value\", "
			    "\"[section]\" or a comment"));
		else
			config_fail(&p, 0, xstrdup("cannot parse (out of memory)"));
	}
	if (p.cause != NULL) {
		*cause = xasprintf("%s:%d: %s", name, p.cause_line, p.cause);
		free(p.cause);
		config_free(p.cfg);
		return NULL;
	}
	return p.cfg;
}

struct config *
config_load_string(const char *text, const char *name, char **cause)
{
	return config_parse_text(text, strlen(text), name, cause);
}

struct config *
config_load(const char *path, char **cause)
{
	struct config *cfg;
	FILE *f;
	char *text;
	size_t len;

	if ((f = fopen(path, "r")) == NULL) {
		*cause = xasprintf("%s: %s", path, strerror(errno));
		return NULL;
	}
	text = xmalloc(CONFIG_FILE_MAX + 1);
	len = fread(text, 1, CONFIG_FILE_MAX + 1, f);
	if (ferror(f) || len > CONFIG_FILE_MAX) {
		*cause = ferror(f) ? xasprintf("%s: read error", path) :
		    xasprintf("%s: file larger than %d bytes", path, CONFIG_FILE_MAX);
		fclose(f);
		free(text);
		return NULL;
	}
	fclose(f);
	text[len] = '\0';
	cfg = config_parse_text(text, len, path, cause);
	free(text);
	return cfg;
}

void
config_keep_restart_keys(struct config *next, const struct config *running,
    config_restart_cb *cb, void *arg)
{
	struct config *run = (struct config *)running;	/* read only */

	for (size_t i = 0; i < NELEM(config_keys); i++) {
		const struct config_key *k = &config_keys[i];
		char key[64];
		bool same;

		if (!(k->flags & CONFIG_RESTART))
			continue;
		if (config_is_text(k->type)) {
			same = strcmp(*config_str(next, k), *config_str(run, k)) == 0;
			if (!same) {
				free(*config_str(next, k));
				*config_str(next, k) = xstrdup(*config_str(run, k));
			}
		} else {
			same = *config_num(next, k) == *config_num(run, k);
			*config_num(next, k) = *config_num(run, k);
		}
		if (!same && cb != NULL) {
			snprintf(key, sizeof(key), "%s.%s", k->section, k->name);
			cb(key, arg);
		}
	}
}

int
config_worker_count(const struct config *cfg)
{
	long n;

	if (cfg->server.workers > 0)
		return (int)cfg->server.workers;
	n = sysconf(_SC_NPROCESSORS_ONLN);
	if (n < 1)
		n = 1;
	return n > 64 ? 64 : (int)n;
}

struct config *
config_ref(struct config *cfg)
{
	atomic_fetch_add(&cfg->refs, 1);
	return cfg;
}

void
config_unref(struct config *cfg)
{
	if (cfg != NULL && atomic_fetch_sub(&cfg->refs, 1) == 1)
		config_free(cfg);
}
