/*
 * trivial_httpd - baseline HTTP server for orderflowd's HTTP layer benchmark.
 *
 * Usage: trivial_httpd -p PORT [-t THREADS]
 *
 * Binds 127.0.0.1:PORT once per thread (SO_REUSEADDR + SO_REUSEPORT, so the
 * kernel spreads connections over the threads, as orderflowd's workers do).
 * Every thread runs its own event_base with its own evhttp and answers every
 * request with 200, Content-Type: application/json and {"status":"ok"}, the
 * same answer as orderflowd's /healthz.  SIGTERM/SIGINT stop it cleanly
 * (exit 0).  Used only by tests/bench/http_bench.sh; not installed.
 */
#include <errno.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <fcntl.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <event2/listener.h>
#include <event2/thread.h>

#define MAX_THREADS 256
#define LISTEN_BACKLOG 511

static const char BODY[] = "{\"status\":\"ok\"}";

struct worker {
	int id;
	int fd;
	struct event_base *base;
	struct evhttp *http;
	struct evconnlistener *listener;
	pthread_t thread;
	int started;
};

static void usage(FILE *out)
{
	fprintf(out, "usage: trivial_httpd -p PORT [-t THREADS]\n"
		     "  answers every request on 127.0.0.1:PORT with 200 {\"status\":\"ok\"}\n"
		     "  -t THREADS  event-loop threads, each with its own SO_REUSEPORT listener "
		     "(default 1, max %d)\n",
		MAX_THREADS);
}

static int parse_int(const char *s, long min, long max, long *out)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (errno != 0 || end == s || *end != '\0' || v < min || v > max)
		return -1;
	*out = v;
	return 0;
}

static int make_listen_socket(int port)
{
	struct sockaddr_in sin;
	int one = 1;
	int fd;

	fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		perror("trivial_httpd: socket");
		return -1;
	}
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
	    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0) {
		perror("trivial_httpd: setsockopt");
		close(fd);
		return -1;
	}
	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_port = htons((unsigned short)port);
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (bind(fd, (struct sockaddr *)&sin, sizeof(sin)) < 0) {
		fprintf(stderr, "trivial_httpd: bind 127.0.0.1:%d: %s\n", port, strerror(errno));
		close(fd);
		return -1;
	}
	if (listen(fd, LISTEN_BACKLOG) < 0) {
		perror("trivial_httpd: listen");
		close(fd);
		return -1;
	}
	return fd;
}

static void handle_request(struct evhttp_request *req, void *arg)
{
	struct evbuffer *out = evhttp_request_get_output_buffer(req);
	struct evkeyvalq *hdrs = evhttp_request_get_output_headers(req);

	(void)arg;
	evhttp_add_header(hdrs, "Content-Type", "application/json");
	evbuffer_add_reference(out, BODY, sizeof(BODY) - 1, NULL, NULL);
	evhttp_send_reply(req, HTTP_OK, "OK", NULL);
}

static int worker_setup(struct worker *w, int port)
{
	w->fd = make_listen_socket(port);
	if (w->fd < 0)
		return -1;
	w->base = event_base_new();
	if (w->base == NULL) {
		fprintf(stderr, "trivial_httpd: event_base_new failed\n");
		return -1;
	}
	w->http = evhttp_new(w->base);
	if (w->http == NULL) {
		fprintf(stderr, "trivial_httpd: evhttp_new failed\n");
		return -1;
	}
	evhttp_set_gencb(w->http, handle_request, w);
	/* backlog 0: the socket is already listening */
	w->listener = evconnlistener_new(w->base, NULL, NULL, LEV_OPT_CLOSE_ON_FREE, 0, w->fd);
	if (w->listener == NULL) {
		fprintf(stderr, "trivial_httpd: evconnlistener_new failed\n");
		return -1;
	}
	w->fd = -1; /* owned by the listener now */
	if (evhttp_bind_listener(w->http, w->listener) == NULL) {
		fprintf(stderr, "trivial_httpd: evhttp_bind_listener failed\n");
		/* evhttp did not take the listener */
		evconnlistener_free(w->listener);
		w->listener = NULL;
		return -1;
	}
	w->listener = NULL; /* owned by evhttp now (freed by evhttp_free) */
	return 0;
}

static void worker_cleanup(struct worker *w)
{
	if (w->http != NULL)
		evhttp_free(w->http);
	if (w->listener != NULL)
		evconnlistener_free(w->listener);
	if (w->fd >= 0)
		close(w->fd);
	if (w->base != NULL)
		event_base_free(w->base);
	w->http = NULL;
	w->listener = NULL;
	w->fd = -1;
	w->base = NULL;
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;

	if (event_base_dispatch(w->base) < 0)
		fprintf(stderr, "trivial_httpd: worker %d: event loop failed\n", w->id);
	return NULL;
}

int main(int argc, char **argv)
{
	struct worker *workers;
	sigset_t sigs;
	long port = -1, nthreads = 1;
	int opt, sig = 0, rc = 0, i, err;

	while ((opt = getopt(argc, argv, "p:t:h")) != -1) {
		switch (opt) {
		case 'p':
			if (parse_int(optarg, 1, 65535, &port) < 0) {
				fprintf(stderr, "trivial_httpd: bad port: %s\n", optarg);
				return 2;
			}
			break;
		case 't':
			if (parse_int(optarg, 1, MAX_THREADS, &nthreads) < 0) {
				fprintf(stderr, "trivial_httpd: bad thread count: %s\n", optarg);
				return 2;
			}
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (port < 0 || optind != argc) {
		usage(stderr);
		return 2;
	}

	/* Signals are taken by the main thread with sigwait(); every worker
	 * inherits the blocked mask.  SIGPIPE is ignored (clients vanish). */
	signal(SIGPIPE, SIG_IGN);
	/* A non-interactive shell starts background jobs with SIGINT ignored. */
	signal(SIGINT, SIG_DFL);
	signal(SIGTERM, SIG_DFL);
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGINT);
	if ((err = pthread_sigmask(SIG_BLOCK, &sigs, NULL)) != 0) {
		fprintf(stderr, "trivial_httpd: pthread_sigmask: %s\n", strerror(err));
		return 1;
	}

	/* The main thread breaks the workers' loops: bases need locking. */
	if (evthread_use_pthreads() < 0) {
		fprintf(stderr, "trivial_httpd: evthread_use_pthreads failed\n");
		return 1;
	}

	workers = calloc((size_t)nthreads, sizeof(*workers));
	if (workers == NULL) {
		perror("trivial_httpd: calloc");
		return 1;
	}
	for (i = 0; i < nthreads; i++) {
		workers[i].id = i;
		workers[i].fd = -1;
	}

	/* Bind everything before starting any thread, so a busy port fails
	 * at once with no half-started server. */
	for (i = 0; i < nthreads; i++) {
		if (worker_setup(&workers[i], (int)port) < 0) {
			rc = 1;
			goto out;
		}
	}
	for (i = 0; i < nthreads; i++) {
		err = pthread_create(&workers[i].thread, NULL, worker_main, &workers[i]);
		if (err != 0) {
			fprintf(stderr, "trivial_httpd: pthread_create: %s\n", strerror(err));
			rc = 1;
			goto stop;
		}
		workers[i].started = 1;
	}

	fprintf(stderr, "trivial_httpd: listening on 127.0.0.1:%ld with %ld thread(s)\n",
		port, nthreads);

	for (;;) {
		err = sigwait(&sigs, &sig);
		if (err == 0)
			break;
		if (err != EINTR) {
			fprintf(stderr, "trivial_httpd: sigwait: %s\n", strerror(err));
			rc = 1;
			break;
		}
	}

stop:
	for (i = 0; i < nthreads; i++)
		if (workers[i].started)
			event_base_loopbreak(workers[i].base);
	for (i = 0; i < nthreads; i++)
		if (workers[i].started)
			pthread_join(workers[i].thread, NULL);
out:
	for (i = 0; i < nthreads; i++)
		worker_cleanup(&workers[i]);
	free(workers);
	libevent_global_shutdown();
	if (rc == 0 && sig != 0)
		fprintf(stderr, "trivial_httpd: %s, exiting\n", sig == SIGTERM ? "SIGTERM" : "SIGINT");
	return rc;
}
