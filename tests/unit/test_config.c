/*
 * Unit tests for config: good files, each kind of bad file, reload merge.
 */
#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "orderflow/config.h"
#include "orderflow/log.h"

/* Load text that must fail, and check the exact "name:LINE: ..." message. */
static void
expect_error(const char *text, const char *want)
{
	char *cause = NULL;
	struct config *cfg = config_load_string(text, "t.conf", &cause);

	assert_null(cfg);
	assert_non_null(cause);
	if (strstr(cause, want) == NULL)
		fail_msg("error \"%s\" does not contain \"%s\"", cause, want);
	free(cause);
}

static struct config *
load_ok(const char *text)
{
	char *cause = NULL;
	struct config *cfg = config_load_string(text, "t.conf", &cause);

	if (cfg == NULL)
		fail_msg("unexpected error: %s", cause);
	return cfg;
}

static void
test_defaults(void **state)
{
	struct config *cfg = load_ok("");

	assert_string_equal(cfg->server.listen_addr, "127.0.0.1");
	assert_int_equal(cfg->server.listen_port, 8080);
	assert_int_equal(cfg->server.workers, 0);
	assert_int_equal(cfg->server.max_body_size, 1024 * 1024);
	assert_int_equal(cfg->server.max_header_size, 16 * 1024);
	assert_int_equal(cfg->server.client_timeout, 30000);
	assert_int_equal(cfg->server.shutdown_timeout, 10000);
	assert_int_equal(cfg->log.level, LOG_INFO);
	assert_string_equal(cfg->postgres.conninfo, "host=/var/run/postgresql dbname=orderflow");
	assert_int_equal(cfg->postgres.pool_size, 4);
	assert_int_equal(cfg->postgres.reconnect_min, 100);
	assert_int_equal(cfg->redis.port, 6379);
	assert_string_equal(cfg->redis.socket, "");
	assert_int_equal(cfg->health.max_queue_age, 60000);
	config_unref(cfg);
}

static void
test_good_file(void **state)
{
	struct config *cfg = load_ok(
	    "# comment\n"
	    "; another comment\n"
	    "\n"
	    "[server]\n"
	    "listen_addr = ::1\n"
	    "listen_port=9090\n"
	    "  workers = 3  \n"
	    "max_body_size = 64k\n"
	    "max_header_size = 2048\n"
	    "client_timeout = 1500ms\n"
	    "shutdown_timeout = 2min\n"
	    "[log]\n"
	    "level = debug\n"
	    "[postgres]\n"
	    "conninfo = \"host=127.0.0.1 port=5433 dbname=x user=y\"\n"
	    "query_timeout = 1h\n"
	    "reconnect_max = 7\n"
	    "[redis]\n"
	    "socket = /run/redis.sock\n"
	    "password = se;cr#et\n"
	    "[health]\n"
	    "max_queue_depth = 5\n");

	assert_string_equal(cfg->server.listen_addr, "::1");
	assert_int_equal(cfg->server.listen_port, 9090);
	assert_int_equal(cfg->server.workers, 3);
	assert_int_equal(config_worker_count(cfg), 3);
	assert_int_equal(cfg->server.max_body_size, 65536);
	assert_int_equal(cfg->server.max_header_size, 2048);
	assert_int_equal(cfg->server.client_timeout, 1500);
	assert_int_equal(cfg->server.shutdown_timeout, 120000);
	assert_int_equal(cfg->log.level, LOG_DEBUG);
	assert_string_equal(cfg->postgres.conninfo, "host=127.0.0.1 port=5433 dbname=x user=y");
	assert_int_equal(cfg->postgres.query_timeout, 3600000);
	assert_int_equal(cfg->postgres.reconnect_max, 7000);
	assert_string_equal(cfg->redis.socket, "/run/redis.sock");
	/* No inline comments: ; and # belong to the value. */
	assert_string_equal(cfg->redis.password, "se;cr#et");
	assert_int_equal(cfg->health.max_queue_depth, 5);
	config_unref(cfg);
}

static void
test_worker_count_auto(void **state)
{
	struct config *cfg = load_ok("[server]\nworkers = 0\n");
	long n = sysconf(_SC_NPROCESSORS_ONLN);

	assert_int_equal(config_worker_count(cfg), n > 64 ? 64 : n);
	config_unref(cfg);
}

static void
test_unknown_key(void **state)
{
	expect_error("[server]\nlisten_port = 1\nbogus = 2\n", "t.conf:3: server.bogus: unknown key");
}

static void
test_unknown_section(void **state)
{
	expect_error("\n[nope]\nx = 1\n", "t.conf:3: [nope]: unknown section");
}

static void
test_key_outside_section(void **state)
{
	expect_error("workers = 2\n", "t.conf:1: workers: key outside of any [section]");
}

static void
test_not_integer(void **state)
{
	expect_error("[server]\nworkers = abc\n", "t.conf:2: server.workers: not an integer: \"abc\"");
	expect_error("[server]\nworkers = 2x\n", "t.conf:2: server.workers: not an integer");
	expect_error("[server]\nworkers =\n", "t.conf:2: server.workers: not an integer: \"\"");
	expect_error("[server]\nlisten_port = 99999999999999999999\n", "t.conf:2: server.listen_port: not an integer");
}

static void
test_out_of_range(void **state)
{
	expect_error("[server]\nworkers = 65\n", "t.conf:2: server.workers: \"65\" is out of range (0..64)");
	expect_error("[server]\nlisten_port = 0\n", "t.conf:2: server.listen_port: \"0\" is out of range");
	expect_error("[server]\nworkers = -1\n", "out of range");
	expect_error("[server]\nmax_body_size = 65m\n", "t.conf:2: server.max_body_size: \"65m\" is out of range");
	expect_error("[postgres]\nconnect_timeout = 10ms\n", "t.conf:2: postgres.connect_timeout: \"10ms\" is out of range");
}

static void
test_bad_duration(void **state)
{
	expect_error("[server]\n\nclient_timeout = 5 days\n",
	    "t.conf:3: server.client_timeout: unknown duration unit \" days\"");
	expect_error("[server]\nclient_timeout = 5sec\n", "unknown duration unit \"sec\"");
	expect_error("[server]\nclient_timeout = soon\n", "t.conf:2: server.client_timeout: not a duration");
}

static void
test_bad_size(void **state)
{
	expect_error("[server]\nmax_body_size = 1g\n", "t.conf:2: server.max_body_size: unknown size unit \"g\"");
	expect_error("[server]\nmax_body_size = big\n", "not a size");
}

static void
test_bad_level(void **state)
{
	expect_error("[log]\nlevel = loud\n", "t.conf:2: log.level: unknown level \"loud\"");
}

static void
test_bad_ip(void **state)
{
	expect_error("[server]\nlisten_addr = localhost\n",
	    "t.conf:2: server.listen_addr: not an IP address: \"localhost\"");
	expect_error("[redis]\nhost = redis.example\n", "t.conf:2: redis.host: not an IP address");
}

static void
test_conninfo(void **state)
{
	struct config *cfg;

	expect_error("[postgres]\nconninfo = host=db.example dbname=x\n",
	    "t.conf:2: postgres.conninfo: host \"db.example\" is a name");
	expect_error("[postgres]\nconninfo = host=/tmp,db.example\n", "host \"db.example\" is a name");
	expect_error("[postgres]\nconninfo = nonsense\n", "t.conf:2: postgres.conninfo: invalid conninfo");
	cfg = load_ok("[postgres]\nconninfo = host=db.example hostaddr=10.0.0.1 dbname=x\n");
	config_unref(cfg);
	cfg = load_ok("[postgres]\nconninfo = postgresql://127.0.0.1:5432/x\n");
	config_unref(cfg);
}

static void
test_url(void **state)
{
	struct config *cfg;

	expect_error("[tiktok]\napi_base = ftp://x\n",
	    "t.conf:2: tiktok.api_base: \"ftp://x\" is not an http:// or https:// URL");
	expect_error("[tiktok]\napi_base = https://\n", "tiktok.api_base: \"https://\" has no host");
	expect_error("[tiktok]\napi_base = https://h/x?a=1\n", "contains a space, query");
	expect_error("[tiktok]\nretry_base = 10s\nretry_max = 1s\n",
	    "t.conf:3: tiktok.retry_max: must not be below tiktok.retry_base");
	cfg = load_ok("[tiktok]\napi_base = https://127.0.0.1:8443/prefix\n");
	assert_string_equal(cfg->tiktok.api_base, "https://127.0.0.1:8443/prefix");
	config_unref(cfg);
}

static void
test_syntax_error(void **state)
{
	expect_error("[server]\nworkers 2\n", "t.conf:2: syntax error");
	expect_error("[server\nworkers = 2\n", "t.conf:1: syntax error");
}

static void
test_duplicate(void **state)
{
	expect_error("[server]\nworkers = 2\n\n[server]\nworkers = 3\n",
	    "t.conf:5: server.workers: duplicate key (first set on line 2)");
}

static void
test_long_line(void **state)
{
	char *text = xmalloc(CONFIG_LINE_MAX + 64);

	strcpy(text, "[redis]\npassword = ");
	memset(text + strlen(text), 'x', CONFIG_LINE_MAX);
	strcpy(text + strlen("[redis]\npassword = ") + CONFIG_LINE_MAX, "\n");
	expect_error(text, "t.conf:2: line longer than 4096 bytes");
	free(text);
}

static void
test_reconnect_pair(void **state)
{
	expect_error("[redis]\nreconnect_min = 10s\nreconnect_max = 1s\n",
	    "t.conf:3: redis.reconnect_max: must not be below redis.reconnect_min");
}

static void
test_missing_file(void **state)
{
	char *cause = NULL;

	assert_null(config_load("/nonexistent/orderflowd.conf", &cause));
	assert_string_equal(cause, "/nonexistent/orderflowd.conf: No such file or directory");
	free(cause);
}

static void
record_key(const char *key, void *arg)
{
	char *seen = arg;

	strcat(seen, key);
	strcat(seen, " ");
}

static void
test_keep_restart_keys(void **state)
{
	struct config *run = load_ok("[server]\nlisten_port = 1000\n[log]\nlevel = warn\n");
	struct config *next = load_ok("[server]\nlisten_port = 2000\nmax_body_size = 2k\n"
	    "[log]\nlevel = debug\n[redis]\nsocket = /x\n[tiktok]\napi_base = http://10.0.0.1\n"
	    "retry_base = 2s\n");
	char seen[256] = "";

	config_keep_restart_keys(next, run, record_key, seen);
	assert_string_equal(seen, "server.listen_port redis.socket tiktok.api_base ");
	assert_string_equal(next->tiktok.api_base, "https://open-api.tiktokglobalshop.com");
	assert_int_equal(next->tiktok.retry_base, 2000);
	assert_int_equal(next->server.listen_port, 1000);
	assert_string_equal(next->redis.socket, "");
	assert_int_equal(next->server.max_body_size, 2048);
	assert_int_equal(next->log.level, LOG_DEBUG);
	config_unref(run);
	config_unref(next);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_defaults),
		cmocka_unit_test(test_good_file),
		cmocka_unit_test(test_worker_count_auto),
		cmocka_unit_test(test_unknown_key),
		cmocka_unit_test(test_unknown_section),
		cmocka_unit_test(test_key_outside_section),
		cmocka_unit_test(test_not_integer),
		cmocka_unit_test(test_out_of_range),
		cmocka_unit_test(test_bad_duration),
		cmocka_unit_test(test_bad_size),
		cmocka_unit_test(test_bad_level),
		cmocka_unit_test(test_bad_ip),
		cmocka_unit_test(test_conninfo),
		cmocka_unit_test(test_url),
		cmocka_unit_test(test_syntax_error),
		cmocka_unit_test(test_duplicate),
		cmocka_unit_test(test_long_line),
		cmocka_unit_test(test_reconnect_pair),
		cmocka_unit_test(test_missing_file),
		cmocka_unit_test(test_keep_restart_keys),
	};

	cmocka_set_message_output(CM_OUTPUT_TAP);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
