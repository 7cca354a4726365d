/*
 * orderflowd: command line, start-up, signals, reload and shutdown.
 *
 * The main thread owns no request work: it loads the config, binds the
 * listeners, starts the workers, and then runs a small event loop of its
 * own for signals (SIGTERM/SIGINT drain, a second one exits at once,
 * SIGHUP reloads), readiness and the systemd STATUS line.  The one-shot
 * modes (-n, --migrate, the API key and creator commands) run instead of all that,
 * with blocking libpq.
 */
#include "config.h"

#include <event2/event.h>
#include <event2/thread.h>
#include <getopt.h>
#include <libpq-fe.h>
#include <openssl/crypto.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "orderflow.h"
#include "orderflow/auth.h"
#include "orderflow/cmd.h"
#include "orderflow/creators.h"
#include "orderflow/www.h"

#define MAIN_POLL_MS 50		/* readiness and exit checks */
#define MAIN_STATUS_MS 5000	/* systemd STATUS= line */

enum main_state {
	MAIN_STARTING,		/* waiting for the workers' first connections */
	MAIN_RUNNING,		/* READY=1 sent */
	MAIN_DRAINING,		/* first SIGTERM/SIGINT seen */
};

struct main_ctx {
	struct event_base *base;
	const char	*config_path;
	bool		verbose;	/* -v: debug whatever the config says */
	struct config	*cfg;		/* running config (a reference) */
	struct worker_set *workers;
	enum main_state	state;
	int64_t		ready_deadline;	/* mono us: READY=1 even if servers are down */
	struct event	*poll;
	struct event	*status;
};

static NORETURN void
main_usage(int status)
{
	fprintf(status == 0 ? stdout : stderr,
	    "usage: orderflowd [-nvVh] [-c file] [--migrate]\n"
	    "       orderflowd [-c file] --create-api-key CREATOR_ID [--key-name NAME]\n"
	    "       orderflowd [-c file] --revoke-api-key KEY_ID\n"
	    "       orderflowd [-c file] --list-api-keys [CREATOR_ID]\n"
	    "       orderflowd [-c file] --create-creator EMAIL [--name NAME] [--id UUID]\n"
	    "       orderflowd [-c file] --list-creators\n"
	    "  -c, --config FILE  configuration file (default %s/orderflowd.conf)\n"
	    "  -n, --check        check the configuration and exit\n"
	    "  -v, --verbose      log at debug level\n"
	    "      --migrate      apply pending database migrations and exit\n"
	    "      --create-api-key CREATOR_ID\n"
	    "                     make an API key for the creator; print it, then its id\n"
	    "      --key-name NAME  the new key's name (default \"default\")\n"
	    "      --revoke-api-key KEY_ID\n"
	    "                     revoke an API key\n"
	    "      --list-api-keys [CREATOR_ID]\n"
	    "                     list the API keys, of one creator or of all\n"
	    "      --create-creator EMAIL [--name NAME] [--id UUID]\n"
	    "                     add a creator (UUID: e.g. its Supabase Auth user id); print its id\n"
	    "      --list-creators  list the creators\n"
	    "  -V, --version      print the version and exit\n"
	    "  -h, --help         this help\n", OF_SYSCONFDIR);
	exit(status);
}

static void
main_apply_log_level(struct main_ctx *m)
{
	log_set_level(m->verbose ? LOG_DEBUG : (enum log_level)m->cfg->log.level);
}

static void
main_status(struct main_ctx *m)
{
	struct worker_set *s = m->workers;
	int pg = 0, rd = 0;

	for (int i = 0; i < s->n; i++) {
		pg += atomic_load(&pg_pool_stats(s->workers[i].pg)->up) > 0;
		rd += rds_connected(s->workers[i].rds);
	}
	sysd_status("%s; workers %d; postgres up on %d/%d; redis up on %d/%d",
	    m->state == MAIN_DRAINING ? "draining" : "serving", s->n, pg, s->n, rd, s->n);
}

static void
main_on_status(evutil_socket_t fd, short what, void *arg)
{
	main_status(arg);
}

/* Readiness once every worker tried its servers, and exit once all ended. */
static void
main_on_poll(evutil_socket_t fd, short what, void *arg)
{
	struct main_ctx *m = arg;

	if (m->state == MAIN_STARTING && (worker_set_all_started(m->workers) ||
	    util_mono_us() > m->ready_deadline)) {
		m->state = MAIN_RUNNING;
		log_info("ready", "addr=%s port=%lld workers=%d", m->cfg->server.listen_addr,
		    (long long)m->cfg->server.listen_port, m->workers->n);
		sysd_ready();
		main_status(m);
	}
	if (m->state == MAIN_DRAINING && worker_set_all_exited(m->workers))
		event_base_loopexit(m->base, NULL);
}

static void
main_restart_key(const char *key, void *arg)
{
	log_warn("config key needs restart", "key=%s", key);
}

/*
 * Load the dashboard's files into cfg (before any worker sees it), so a
 * request never reads the disk.  A missing directory only warns.
 */
static bool
main_load_site(struct config *cfg, char **cause)
{
	char *warning = NULL;

	if ((cfg->site = www_site_load(cfg->www.root, &warning, cause)) == NULL)
		return false;
	cfg->site_free = www_site_free;
	if (warning != NULL)
		log_warn("no dashboard page", "reason=%s", log_quote(warning));
	else
		log_debug("dashboard files loaded", "root=%s files=%zu", log_quote(cfg->www.root),
		    www_site_files(cfg->site));
	free(warning);
	return true;
}

static void
main_reload(struct main_ctx *m)
{
	struct config *next;
	char *cause = NULL;

	sysd_reloading();
	if ((next = config_load(m->config_path, &cause)) == NULL ||
	    !main_load_site(next, &cause)) {
		log_error("config reload failed", "error=%s", log_quote(cause));
		free(cause);
		config_unref(next);
		sysd_ready();
		return;
	}
	config_keep_restart_keys(next, m->cfg, main_restart_key, NULL);
	config_unref(m->cfg);
	m->cfg = next;
	main_apply_log_level(m);
	worker_set_reload(m->workers, next);
	log_info("config reloaded", "file=%s level=%s", log_quote(m->config_path),
	    log_level_name(log_get_level()));
	sysd_ready();
}

static void
main_on_signal(evutil_socket_t sig, short what, void *arg)
{
	struct main_ctx *m = arg;

	if (sig == SIGHUP) {
		if (m->state != MAIN_DRAINING)
			main_reload(m);
		return;
	}
	if (m->state == MAIN_DRAINING) {
		log_warn("second signal: exiting now", "signal=%d", (int)sig);
		_exit(1);
	}
	m->state = MAIN_DRAINING;
	log_info("shutting down", "signal=%d timeout_ms=%lld", (int)sig,
	    (long long)m->cfg->server.shutdown_timeout);
	sysd_stopping();
	worker_set_drain(m->workers);
}

static int
main_serve(struct main_ctx *m)
{
	struct event *sigs[3];
	const int signums[3] = { SIGTERM, SIGINT, SIGHUP };
	struct timeval poll = { 0, MAIN_POLL_MS * 1000 };
	struct timeval status = { MAIN_STATUS_MS / 1000, 0 };
	char *cause = NULL;

	signal(SIGPIPE, SIG_IGN);
	evthread_use_pthreads();
	sysd_init();
	m->base = event_base_new();
	if (!main_load_site(m->cfg, &cause) || (m->workers = worker_set_new(m->cfg, &cause)) == NULL ||
	    !worker_set_start(m->workers, &cause)) {
		log_error("cannot start", "error=%s", log_quote(cause));
		free(cause);
		return 1;
	}
	log_info("listening", strchr(m->cfg->server.listen_addr, ':') != NULL ?
	    "addr=[%s]:%lld workers=%d" : "addr=%s:%lld workers=%d", m->cfg->server.listen_addr,
	    (long long)m->cfg->server.listen_port, m->workers->n);
	for (int i = 0; i < 3; i++) {
		sigs[i] = evsignal_new(m->base, signums[i], main_on_signal, m);
		evsignal_add(sigs[i], NULL);
	}
	m->ready_deadline = util_mono_us() + m->cfg->postgres.connect_timeout * 1000 + 1000000;
	m->poll = event_new(m->base, -1, EV_PERSIST, main_on_poll, m);
	event_add(m->poll, &poll);
	m->status = event_new(m->base, -1, EV_PERSIST, main_on_status, m);
	event_add(m->status, &status);
	log_info("starting", "version=%s config=%s workers=%d", PACKAGE_VERSION,
	    log_quote(m->config_path), m->workers->n);
	event_base_dispatch(m->base);
	worker_set_free(m->workers);
	for (int i = 0; i < 3; i++)
		event_free(sigs[i]);
	event_free(m->poll);
	event_free(m->status);
	event_base_free(m->base);
	log_info("stopped", "%s", "");
	return 0;
}

/* --- API key commands (blocking libpq: they run instead of the daemon) --- */

/* What one run of the program does. */
enum main_mode {
	MAIN_MODE_SERVE,	/* run the daemon */
	MAIN_MODE_CHECK,	/* -n */
	MAIN_MODE_MIGRATE,	/* --migrate */
	MAIN_MODE_CREATE_KEY,	/* --create-api-key */
	MAIN_MODE_REVOKE_KEY,	/* --revoke-api-key */
	MAIN_MODE_LIST_KEYS,	/* --list-api-keys */
	MAIN_MODE_CREATE_CREATOR, /* --create-creator */
	MAIN_MODE_LIST_CREATORS, /* --list-creators */
};

static const char main_key_create_sql[] =
    "WITH k AS (INSERT INTO api_keys (id, creator_id, name, key_hash)"
    " VALUES ($1, $2::uuid, $3, $4) RETURNING id, creator_id, name),"
    " a AS (INSERT INTO audit_log (user_id, actor, action, entity_type, entity_id, after)"
    " SELECT creator_id, 'cli', 'api_key.created', 'api_key', id,"
    " jsonb_build_object('name', name) FROM k)"
    " SELECT id FROM k";
static const char main_key_revoke_sql[] =
    "WITH r AS (UPDATE api_keys SET revoked_at = now() WHERE id = $1 AND revoked_at IS NULL"
    " RETURNING id, creator_id),"
    " a AS (INSERT INTO audit_log (user_id, actor, action, entity_type, entity_id)"
    " SELECT creator_id, 'cli', 'api_key.revoked', 'api_key', id FROM r)"
    " SELECT (SELECT count(*) FROM r), EXISTS (SELECT 1 FROM api_keys WHERE id = $1)";
#define MAIN_UTC(col) \
    "to_char(" col " AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')"
static const char main_key_list_sql[] =
    "SELECT id, creator_id::text, name, " MAIN_UTC("created_at") ","
    " coalesce(" MAIN_UTC("revoked_at") ", '-'), coalesce(" MAIN_UTC("last_used_at") ", '-')"
    " FROM api_keys WHERE $1::uuid IS NULL OR creator_id = $1::uuid ORDER BY created_at, id";

/* --create-api-key: insert the hash, print the key (once) and its id. */
static int
main_key_create(const struct config *cfg, const char *creator, const char *name)
{
	char key[AUTH_KEY_MAX_LEN + 1], id[AUTH_KEY_ID_LEN + 1];
	unsigned char hash[AUTH_KEY_HASH_LEN];
	const int lengths[4] = { 0, 0, 0, AUTH_KEY_HASH_LEN }, formats[4] = { 0, 0, 0, 1 };
	const char *params[4] = { id, creator, name, (const char *)hash };
	PGconn *conn;
	PGresult *r;
	int rc = 1;

	if ((conn = cmd_pg_connect(cfg)) == NULL)
		return 1;
	/* Ids are 64 random bits; a collision is retried, not reported. */
	for (int attempt = 0; attempt < 3; attempt++) {
		const char *state;

		if (!auth_key_generate(key, id)) {
			fprintf(stderr, "orderflowd: the random generator failed\n");
			break;
		}
		auth_key_hash(key, strlen(key), hash);
		r = PQexecParams(conn, main_key_create_sql, 4, NULL, params, lengths, formats, 0);
		state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
		if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1) {
			printf("%s\n%s\n", key, id);
			fflush(stdout);
			fprintf(stderr, "orderflowd: API key %s created for creator %s; "
			    "the key is shown only this once\n", id, creator);
			rc = 0;
		} else if (state != NULL && strcmp(state, "23503") == 0) {
			fprintf(stderr, "orderflowd: no creator with id %s\n", creator);
		} else if (state != NULL && strcmp(state, "23505") == 0) {
			PQclear(r);
			continue;
		} else {
			cmd_pg_error(r, "cannot create the API key", "api_keys");
		}
		PQclear(r);
		break;
	}
	OPENSSL_cleanse(key, sizeof(key));
	PQfinish(conn);
	return rc;
}

/* --revoke-api-key: idempotent; an unknown id is an error. */
static int
main_key_revoke(const struct config *cfg, const char *id)
{
	const char *params[1] = { id };
	PGconn *conn;
	PGresult *r;
	int rc = 1;

	if ((conn = cmd_pg_connect(cfg)) == NULL)
		return 1;
	r = PQexecParams(conn, main_key_revoke_sql, 1, NULL, params, NULL, NULL, 0);
	if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1) {
		cmd_pg_error(r, "cannot revoke the API key", "api_keys");
	} else if (strcmp(PQgetvalue(r, 0, 1), "t") != 0) {
		fprintf(stderr, "orderflowd: no API key with id %s\n", id);
	} else {
		if (strcmp(PQgetvalue(r, 0, 0), "0") == 0)
			fprintf(stderr, "orderflowd: API key %s was already revoked\n", id);
		else
			fprintf(stderr, "orderflowd: API key %s revoked; running daemons refuse it "
			    "within auth.api_key_ttl (%lld ms)\n", id,
			    (long long)cfg->auth.api_key_ttl);
		rc = 0;
	}
	PQclear(r);
	PQfinish(conn);
	return rc;
}

/* --list-api-keys: one tab-separated line per key, never the hash. */
static int
main_key_list(const struct config *cfg, const char *creator)
{
	const char *params[1] = { creator };
	PGconn *conn;
	PGresult *r;
	int rc = 1;

	if ((conn = cmd_pg_connect(cfg)) == NULL)
		return 1;
	if (creator != NULL) {
		r = PQexecParams(conn, "SELECT 1 FROM creators WHERE id = $1::uuid", 1, NULL, params,
		    NULL, NULL, 0);
		if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1) {
			if (PQresultStatus(r) == PGRES_TUPLES_OK)
				fprintf(stderr, "orderflowd: no creator with id %s\n", creator);
			else
				cmd_pg_error(r, "cannot list the API keys", "api_keys");
			PQclear(r);
			PQfinish(conn);
			return 1;
		}
		PQclear(r);
	}
	r = PQexecParams(conn, main_key_list_sql, 1, NULL, params, NULL, NULL, 0);
	if (PQresultStatus(r) != PGRES_TUPLES_OK) {
		cmd_pg_error(r, "cannot list the API keys", "api_keys");
	} else {
		printf("ID\tCREATOR\tNAME\tCREATED\tREVOKED\tLAST_USED\n");
		for (int i = 0; i < PQntuples(r); i++)
			printf("%s\t%s\t%s\t%s\t%s\t%s\n", PQgetvalue(r, i, 0), PQgetvalue(r, i, 1),
			    PQgetvalue(r, i, 2), PQgetvalue(r, i, 3), PQgetvalue(r, i, 4),
			    PQgetvalue(r, i, 5));
		rc = 0;
	}
	PQclear(r);
	PQfinish(conn);
	return rc;
}

/* Check a command's argument before anything is loaded; exit 2 when it is malformed. */
static void
main_check_args(enum main_mode mode, char *arg, const char *name)
{
	char uuid[JWT_UUID_LEN + 1];

	if (mode == MAIN_MODE_CREATE_KEY || (mode == MAIN_MODE_LIST_KEYS && arg != NULL)) {
		if (!jwt_uuid_parse(arg, strlen(arg), uuid)) {
			fprintf(stderr, "orderflowd: \"%s\" is not a creator id (a UUID)\n", arg);
			exit(2);
		}
		memcpy(arg, uuid, sizeof(uuid));
	}
	if (mode == MAIN_MODE_REVOKE_KEY && !auth_key_id_valid(arg)) {
		fprintf(stderr, "orderflowd: \"%s\" is not an API key id (16 lower-case hex digits)\n",
		    arg);
		exit(2);
	}
	if (name != NULL) {
		bool ctl = false;
		size_t chars = 0;

		if (mode != MAIN_MODE_CREATE_KEY) {
			fprintf(stderr, "orderflowd: --key-name goes with --create-api-key\n");
			exit(2);
		}
		/* Characters as PostgreSQL counts them in UTF-8, not bytes. */
		for (const char *c = name; *c != '\0'; c++) {
			ctl |= (unsigned char)*c < 0x20 || *c == 0x7f;
			chars += ((unsigned char)*c & 0xc0) != 0x80;
		}
		if (ctl || chars > AUTH_NAME_MAX) {
			fprintf(stderr, "orderflowd: the key name must be at most %d characters, "
			    "without control characters\n", AUTH_NAME_MAX);
			exit(2);
		}
	}
}

/* --create-creator's e-mail, --name and --id; exit 2 when one is malformed or out of place. */
static void
main_check_creator_args(enum main_mode mode, const char *email, const char *name, char *id)
{
	char uuid[JWT_UUID_LEN + 1];
	const char *why;

	if ((name != NULL || id != NULL) && mode != MAIN_MODE_CREATE_CREATOR) {
		fprintf(stderr, "orderflowd: --name and --id go with --create-creator\n");
		exit(2);
	}
	if (mode != MAIN_MODE_CREATE_CREATOR)
		return;
	if ((why = creators_email_check(email)) != NULL ||
	    (name != NULL && (why = creators_name_check(name)) != NULL)) {
		fprintf(stderr, "orderflowd: %s\n", why);
		exit(2);
	}
	if (id != NULL) {
		if (!jwt_uuid_parse(id, strlen(id), uuid)) {
			fprintf(stderr, "orderflowd: \"%s\" is not a creator id (a UUID)\n", id);
			exit(2);
		}
		memcpy(id, uuid, sizeof(uuid));
	}
}

/* Run one API key command. */
static int
main_key_command(enum main_mode mode, const struct config *cfg, const char *arg,
    const char *name)
{
	switch (mode) {
	case MAIN_MODE_CREATE_KEY:
		return main_key_create(cfg, arg, name != NULL ? name : "default");
	case MAIN_MODE_REVOKE_KEY:
		return main_key_revoke(cfg, arg);
	case MAIN_MODE_LIST_KEYS:
		return main_key_list(cfg, arg);
	default:
		return 2;
	}
}

/* Only one of -n, --migrate and the API key commands per run. */
static void
main_set_mode(enum main_mode *mode, enum main_mode m)
{
	/* -n with --migrate has always meant -n: keep that. */
	if ((*mode == MAIN_MODE_CHECK && m == MAIN_MODE_MIGRATE) ||
	    (*mode == MAIN_MODE_MIGRATE && m == MAIN_MODE_CHECK)) {
		*mode = MAIN_MODE_CHECK;
		return;
	}
	if (*mode != MAIN_MODE_SERVE && *mode != m) {
		fprintf(stderr, "orderflowd: -n, --migrate, --create-api-key, --revoke-api-key, "
		    "--list-api-keys, --create-creator and --list-creators exclude each other\n");
		exit(2);
	}
	*mode = m;
}

int
main(int argc, char **argv)
{
	enum { OPT_MIGRATE = 1000, OPT_CREATE_KEY, OPT_REVOKE_KEY, OPT_LIST_KEYS, OPT_KEY_NAME,
		OPT_CREATE_CREATOR, OPT_LIST_CREATORS, OPT_NAME, OPT_ID };
	static const struct option longopts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "check", no_argument, NULL, 'n' },
		{ "verbose", no_argument, NULL, 'v' },
		{ "version", no_argument, NULL, 'V' },
		{ "help", no_argument, NULL, 'h' },
		{ "migrate", no_argument, NULL, OPT_MIGRATE },
		{ "create-api-key", required_argument, NULL, OPT_CREATE_KEY },
		{ "revoke-api-key", required_argument, NULL, OPT_REVOKE_KEY },
		{ "list-api-keys", no_argument, NULL, OPT_LIST_KEYS },
		{ "key-name", required_argument, NULL, OPT_KEY_NAME },
		{ "create-creator", required_argument, NULL, OPT_CREATE_CREATOR },
		{ "list-creators", no_argument, NULL, OPT_LIST_CREATORS },
		{ "name", required_argument, NULL, OPT_NAME },
		{ "id", required_argument, NULL, OPT_ID },
		{ NULL, 0, NULL, 0 },
	};
	struct main_ctx m = { .config_path = OF_SYSCONFDIR "/orderflowd.conf" };
	enum main_mode mode = MAIN_MODE_SERVE;
	char *cause = NULL, *key_arg = NULL;
	const char *key_name = NULL, *creator_name = NULL;
	char *creator_id = NULL;
	int ch, rc;

	while ((ch = getopt_long(argc, argv, "c:nvVh", longopts, NULL)) != -1) {
		switch (ch) {
		case 'c': m.config_path = optarg; break;
		case 'n': main_set_mode(&mode, MAIN_MODE_CHECK); break;
		case 'v': m.verbose = true; break;
		case 'V': printf("orderflowd %s\n", PACKAGE_VERSION); return 0;
		case 'h': main_usage(0);
		case OPT_MIGRATE: main_set_mode(&mode, MAIN_MODE_MIGRATE); break;
		case OPT_CREATE_KEY:
		case OPT_REVOKE_KEY:
			main_set_mode(&mode, ch == OPT_CREATE_KEY ? MAIN_MODE_CREATE_KEY :
			    MAIN_MODE_REVOKE_KEY);
			key_arg = optarg;
			break;
		case OPT_LIST_KEYS: main_set_mode(&mode, MAIN_MODE_LIST_KEYS); break;
		case OPT_KEY_NAME: key_name = optarg; break;
		case OPT_CREATE_CREATOR:
			main_set_mode(&mode, MAIN_MODE_CREATE_CREATOR);
			key_arg = optarg;
			break;
		case OPT_LIST_CREATORS: main_set_mode(&mode, MAIN_MODE_LIST_CREATORS); break;
		case OPT_NAME: creator_name = optarg; break;
		case OPT_ID: creator_id = optarg; break;
		default: main_usage(2);
		}
	}
	/* --list-api-keys takes an optional operand: the creator. */
	if (mode == MAIN_MODE_LIST_KEYS && optind == argc - 1)
		key_arg = argv[optind++];
	if (optind != argc)
		main_usage(2);
	main_check_args(mode, key_arg, key_name);
	main_check_creator_args(mode, key_arg, creator_name, creator_id);
	if ((m.cfg = config_load(m.config_path, &cause)) == NULL) {
		fprintf(stderr, "orderflowd: %s\n", cause);
		free(cause);
		return 1;
	}
	main_apply_log_level(&m);
	if (mode == MAIN_MODE_CHECK) {
		fprintf(stderr, "orderflowd: %s: configuration OK\n", m.config_path);
		rc = 0;
	} else if (mode == MAIN_MODE_MIGRATE) {
		rc = migrate_run(m.cfg) ? 0 : 1;
	} else if (mode == MAIN_MODE_CREATE_CREATOR) {
		rc = creators_cmd_create(m.cfg, key_arg, creator_name, creator_id);
	} else if (mode == MAIN_MODE_LIST_CREATORS) {
		rc = creators_cmd_list(m.cfg);
	} else if (mode != MAIN_MODE_SERVE) {
		rc = main_key_command(mode, m.cfg, key_arg, key_name);
	} else {
		rc = main_serve(&m);
	}
	config_unref(m.cfg);
	return rc;
}
