/*
 * config: the process configuration, parsed from one INI file.
 *
 * Every key is a row of one table in config.c: section, name, type,
 * default (as text, parsed by the same code as the file), bounds, and
 * whether a reload may change it.  A loaded config is immutable and
 * reference counted: main loads it, hands a reference to each worker, and
 * on SIGHUP builds a new one that the workers swap in through their queues.
 * Called by main (load, reload) and by every module that reads settings.
 */
#ifndef ORDERFLOW_CONFIG_H
#define ORDERFLOW_CONFIG_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "orderflow/util.h"

/* Longest line accepted in a config file, in bytes. */
#define CONFIG_LINE_MAX 4096
/* Largest config file accepted, in bytes. */
#define CONFIG_FILE_MAX (1024 * 1024)
/* Bytes of a secret read from a file (carrier.api_key_file ...). */
#define CONFIG_SECRET_MAX 512

struct www_site;

struct config {
	atomic_int	refs;		/* references; freed at zero */
	char		*path;		/* file it came from, or "<defaults>" */
	struct {
		char	*listen_addr;	/* IP literal */
		int64_t	listen_port;
		int64_t	workers;	/* 0: one per online CPU */
		int64_t	listen_backlog;
		int64_t	max_body_size;	/* bytes */
		int64_t	max_header_size; /* bytes */
		int64_t	client_timeout;	/* ms */
		int64_t	shutdown_timeout; /* ms */
	} server;
	struct {
		int64_t	level;		/* enum log_level */
	} log;
	struct {
		char	*conninfo;
		int64_t	pool_size;	/* connections per worker */
		int64_t	max_wait_queue;	/* queued batches per worker */
		int64_t	connect_timeout; /* ms */
		int64_t	query_timeout;	/* ms */
		int64_t	reconnect_min;	/* ms */
		int64_t	reconnect_max;	/* ms */
		char	*migrations_dir;
	} postgres;
	struct {
		char	*host;		/* IP literal */
		int64_t	port;
		char	*socket;	/* unix socket path; "" = use host/port */
		int64_t	db;
		char	*password;	/* "" = no AUTH */
		int64_t	connect_timeout; /* ms */
		int64_t	command_timeout; /* ms */
		int64_t	reconnect_min;	/* ms */
		int64_t	reconnect_max;	/* ms */
	} redis;
	struct {
		int64_t	max_queue_depth;
		int64_t	max_queue_age;	/* ms */
	} health;
	struct {
		int64_t	max_age;	/* ms; older events are refused, 0 = no limit */
		int64_t	max_skew;	/* ms an event's timestamp may be ahead of us */
		int64_t	max_batch;	/* events per group-commit transaction */
		int64_t	shop_refresh;	/* ms between reloads of the shop credentials */
		int64_t	retention;	/* ms a processed event keeps its raw body; 0 = for ever */
	} webhook;
	struct {
		char	*api_base;	/* https://host[:port] of the Partner API */
		char	*ca_file;	/* "" = the system's trust store */
		int64_t	connections;	/* keep-alive connections per worker */
		int64_t	connect_timeout; /* ms */
		int64_t	request_timeout; /* ms, connect included */
		int64_t	detail_batch;	/* order ids per Get Order Detail call */
		int64_t	retry_attempts;	/* attempts in all, the first included */
		int64_t	retry_base;	/* ms before the first retry */
		int64_t	retry_max;	/* ms, cap on any retry delay */
		int64_t	breaker_threshold; /* failures in breaker_window that open it */
		int64_t	breaker_window;	/* ms */
		int64_t	breaker_reset;	/* ms the breaker stays open */
		int64_t	max_queue;	/* events held in memory per worker */
		int64_t	lease;		/* ms an event stays claimed by this process */
		int64_t	claim_interval;	/* ms between sweeps for unclaimed events */
		int64_t	sync_interval;	/* ms between polls per shop; 0 = no polling */
		int64_t	sync_margin;	/* ms the poll window reaches back before the cursor */
		int64_t	sync_lookback;	/* ms a shop's first poll reaches back */
		int64_t	sync_page_size;	/* orders per Search Orders page */
		/* Connecting shops (TikTok's authorization flow) and renewing their tokens. */
		char	*app_key;	/* the partner app's key; "" = connecting is off */
		char	*app_secret_file; /* file holding the app secret */
		char	*service_id;	/* the app's service id, for the authorization page */
		char	*authorize_url;	/* TikTok's authorization page */
		char	*auth_base;	/* https://host of the token endpoints */
		char	*connect_done_url; /* where the browser goes after a connect; "" = a page */
		int64_t	state_lifetime;	/* ms an authorization link stays usable */
		int64_t	token_refresh_margin; /* ms before expiry a token is renewed */
		int64_t	token_lease;	/* ms one process holds a renewal */
		char	*app_secret;	/* read from app_secret_file at load; NULL when none */
	} tiktok;
	struct {
		char	*token;		/* bearer token of the admin endpoints; "" = disabled */
	} admin;
	struct {
		char	*jwt_secret;	/* HS256 key of dashboard tokens; "" = JWT refused */
		char	*jwt_audience;	/* required "aud"; "" = not checked */
		int64_t	jwt_leeway;	/* ms of clock skew allowed on exp and nbf */
		int64_t	api_key_ttl;	/* ms a verified API key is remembered */
		int64_t	failure_burst;	/* refused credentials per address before 429; 0 = off */
		int64_t	failure_refill;	/* ms after which one failure is forgiven */
	} auth;
	struct {
		int64_t	rate;		/* requests per second per creator or key; 0 = off */
		int64_t	burst;		/* bucket size */
	} ratelimit;
	struct {
		int64_t	order_cache_ttl; /* ms an order's JSON stays in Redis; 0 = no cache */
		int64_t	max_bulk;	/* order ids per bulk status call */
	} api;
	struct {
		int64_t	retry_attempts;	/* attempts of a workflow action, the first included */
		int64_t	retry_base;	/* ms before the first retry */
		int64_t	retry_max;	/* ms, cap on any retry delay */
		int64_t	retry_multiplier; /* growth per retry, x100 */
		int64_t	lease;		/* ms a run stays claimed by this process */
		int64_t	claim_interval;	/* ms between sweeps for due runs */
		int64_t	max_batch;	/* transitions per commit */
		int64_t	rules_cache;	/* ms a creator's rules and definitions are kept */
		int64_t	stock_recheck;	/* ms between checks for stock that can wake waiting runs */
		int64_t	max_due_age;	/* ms a due run may wait before health says degraded */
	} workflow;
	struct {
		int64_t	retry_attempts;	/* attempts of a stock operation, the first included */
		int64_t	retry_base;	/* ms */
		int64_t	retry_max;	/* ms */
		int64_t	retry_multiplier; /* x100 */
		int64_t	breaker_threshold; /* failures in breaker_window that open it */
		int64_t	breaker_window;	/* ms */
		int64_t	breaker_reset;	/* ms the breaker stays open */
	} inventory;
	struct {
		char	*api_base;	/* EasyPost-compatible API, e.g. https://api.easypost.com/v2 */
		char	*api_key_file;	/* file holding the API key; "" = no carrier */
		char	*webhook_secret_file; /* file holding the webhook secret; "" = no webhooks */
		char	*ca_file;	/* "" = the system's trust store */
		int64_t	connections;	/* keep-alive connections per worker */
		int64_t	connect_timeout; /* ms */
		int64_t	request_timeout; /* ms, connect included */
		int64_t	breaker_threshold; /* failures in breaker_window that open it */
		int64_t	breaker_window;	/* ms */
		int64_t	breaker_reset;	/* ms the breaker stays open */
		/* Read from the files at load, never dumped: NULL when no file is set. */
		char	*api_key;
		char	*webhook_secret;
	} carrier;
	struct {
		int64_t	retry_attempts;	/* attempts of a shipping step, the first included */
		int64_t	retry_base;	/* ms */
		int64_t	retry_max;	/* ms */
		int64_t	sla_warning;	/* ms before rts_sla_time an unshipped order is at risk */
		int64_t	provider_cache;	/* ms TikTok's shipping providers are kept per delivery option */
	} shipping;
	struct {
		char	*root;		/* the dashboard's static files */
	} www;
	struct {
		int64_t	poll_interval;	/* ms between reads of the event log */
		int64_t	heartbeat;	/* ms between SSE comments on a quiet stream */
		int64_t	retention;	/* ms an event stays resumable */
		int64_t	max_streams;	/* open streams per worker */
		int64_t	max_streams_per_creator; /* open streams per creator, per process */
		int64_t	max_buffer;	/* bytes queued to a slow stream before it is dropped */
	} events;
	/*
	 * The files under www.root, loaded by main with the config (www.h);
	 * dropped with it by site_free.  NULL when not loaded.
	 */
	struct www_site *site;
	void		(*site_free)(struct www_site *site);
};

/* Called for each key that changed but needs a restart to take effect. */
typedef void config_restart_cb(const char *key, void *arg);

/*
 * Load and validate a file.  On error returns NULL and sets *cause to
 * "FILE:LINE: section.key: reason" (caller frees).
 */
struct config *config_load(const char *path, char **cause) MUSTCHECK;
/* The same from text in memory; name stands for the file in messages. */
struct config *config_load_string(const char *text, const char *name,
    char **cause) MUSTCHECK;

/*
 * Prepare a freshly loaded config to replace a running one: keys that need
 * a restart keep their running values, and each one that differed is
 * reported through cb.
 */
void config_keep_restart_keys(struct config *next, const struct config *running,
    config_restart_cb *cb, void *arg);

/* Number of worker threads this config asks for (resolves workers = 0). */
int config_worker_count(const struct config *cfg);

struct config *config_ref(struct config *cfg);
void config_unref(struct config *cfg);

#endif
