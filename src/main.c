/*
 * orderflowd: command line, start-up, signals, reload and shutdown.
 *
 * The main thread owns no request work: it loads the config, binds the
 * listeners, starts the workers, and then runs a small event loop of its
 * own for signals (SIGTERM/SIGINT drain, a second one exits at once,
 * SIGHUP reloads), readiness and the systemd STATUS line.
 */
#include "config.h"

#include <event2/event.h>
#include <event2/thread.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "orderflow.h"

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
	    "  -c, --config FILE  configuration file (default %s/orderflowd.conf)\n"
	    "  -n, --check        check the configuration and exit\n"
	    "  -v, --verbose      log at debug level\n"
	    "      --migrate      apply pending database migrations and exit\n"
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

static void
main_reload(struct main_ctx *m)
{
	struct config *next;
	char *cause = NULL;

	sysd_reloading();
	if ((next = config_load(m->config_path, &cause)) == NULL) {
		log_error("config reload failed", "error=%s", log_quote(cause));
		free(cause);
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
	if ((m->workers = worker_set_new(m->cfg, &cause)) == NULL ||
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

int
main(int argc, char **argv)
{
	enum { OPT_MIGRATE = 1000 };
	static const struct option longopts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "check", no_argument, NULL, 'n' },
		{ "verbose", no_argument, NULL, 'v' },
		{ "version", no_argument, NULL, 'V' },
		{ "help", no_argument, NULL, 'h' },
		{ "migrate", no_argument, NULL, OPT_MIGRATE },
		{ NULL, 0, NULL, 0 },
	};
	struct main_ctx m = { .config_path = OF_SYSCONFDIR "/orderflowd.conf" };
	bool check = false, migrate = false;
	char *cause = NULL;
	int ch, rc;

	while ((ch = getopt_long(argc, argv, "c:nvVh", longopts, NULL)) != -1) {
		switch (ch) {
		case 'c': m.config_path = optarg; break;
		case 'n': check = true; break;
		case 'v': m.verbose = true; break;
		case 'V': printf("orderflowd %s\n", PACKAGE_VERSION); return 0;
		case 'h': main_usage(0);
		case OPT_MIGRATE: migrate = true; break;
		default: main_usage(2);
		}
	}
	if (optind != argc)
		main_usage(2);
	if ((m.cfg = config_load(m.config_path, &cause)) == NULL) {
		fprintf(stderr, "orderflowd: %s\n", cause);
		free(cause);
		return 1;
	}
	main_apply_log_level(&m);
	if (check) {
		fprintf(stderr, "orderflowd: %s: configuration OK\n", m.config_path);
		rc = 0;
	} else if (migrate) {
		rc = migrate_run(m.cfg) ? 0 : 1;
	} else {
		rc = main_serve(&m);
	}
	config_unref(m.cfg);
	return rc;
}
