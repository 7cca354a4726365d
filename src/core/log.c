/*
 * log: logfmt lines on stderr.
 *
 * When stderr is the journal (JOURNAL_STREAM names it), each line starts
 * with a syslog priority prefix "<N>" so journald stores the right level.
 */
#include "config.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "orderflow/log.h"

#define LOG_LINE_MAX 4096
#define LOG_QUOTE_RING 8
#define LOG_QUOTE_MAX 512

static atomic_int log_level = LOG_INFO;
static atomic_int log_journal = -1;	/* -1 unknown, 0 no, 1 yes */
static _Thread_local int log_worker = -1;
static _Thread_local char log_quote_buf[LOG_QUOTE_RING][LOG_QUOTE_MAX];
static _Thread_local unsigned log_quote_next;

static const char *const log_names[] = { "error", "warn", "info", "debug" };
static const int log_syslog_prio[] = { 3, 4, 6, 7 };

void
log_set_level(enum log_level level)
{
	atomic_store(&log_level, (int)level);
}

enum log_level
log_get_level(void)
{
	return (enum log_level)atomic_load_explicit(&log_level, memory_order_relaxed);
}

const char *
log_level_name(enum log_level level)
{
	return level <= LOG_DEBUG ? log_names[level] : "?";
}

void
log_set_worker(int id)
{
	log_worker = id;
}

/* JOURNAL_STREAM is "dev:ino" of the journal socket when stderr goes there. */
static bool
log_to_journal(void)
{
	int j = atomic_load(&log_journal);
	const char *env;
	struct stat st;
	unsigned long dev, ino;

	if (j >= 0)
		return j == 1;
	env = getenv("JOURNAL_STREAM");
	j = env != NULL && sscanf(env, "%lu:%lu", &dev, &ino) == 2 &&
	    fstat(STDERR_FILENO, &st) == 0 &&
	    (unsigned long)st.st_dev == dev && (unsigned long)st.st_ino == ino;
	atomic_store(&log_journal, j);
	return j == 1;
}

/* logfmt quotes a value only when it has to: empty, spaces, '=', quotes or controls. */
static bool
log_needs_quotes(const char *s)
{
	if (*s == '\0')
		return true;
	for (; *s != '\0'; s++)
		if ((unsigned char)*s <= ' ' || *s == '=' || *s == '"' || *s == '\\')
			return true;
	return false;
}

const char *
log_quote(const char *s)
{
	char *buf = log_quote_buf[log_quote_next++ % LOG_QUOTE_RING];

	if (s == NULL)
		s = "";
	if (!log_needs_quotes(s)) {
		snprintf(buf, LOG_QUOTE_MAX, "%s", s);
		return buf;
	}
	buf[0] = '"';
	util_json_escape(buf + 1, LOG_QUOTE_MAX - 2, s);
	strcat(buf, "\"");
	return buf;
}

void
log_write(enum log_level level, const char *msg, const char *kvfmt, ...)
{
	char line[LOG_LINE_MAX], ts[32];
	size_t n = 0;
	va_list ap;
	int r;

	util_rfc3339(ts, sizeof(ts), util_wall_ms());
	if (log_to_journal())
		n += (size_t)snprintf(line, sizeof(line), "<%d>", log_syslog_prio[level]);
	n += (size_t)snprintf(line + n, sizeof(line) - n, "ts=%s level=%s", ts,
	    log_level_name(level));
	if (log_worker >= 0)
		n += (size_t)snprintf(line + n, sizeof(line) - n, " worker=%d", log_worker);
	n += (size_t)snprintf(line + n, sizeof(line) - n, " msg=%s", log_quote(msg));
	if (kvfmt != NULL && kvfmt[0] != '\0' && n < sizeof(line) - 2) {
		line[n++] = ' ';
		va_start(ap, kvfmt);
		r = vsnprintf(line + n, sizeof(line) - n, kvfmt, ap);
		va_end(ap);
		if (r > 0)
			n += (size_t)r;
		if (n >= sizeof(line))
			n = sizeof(line) - 1;
		while (n > 0 && line[n - 1] == ' ')
			n--;
	}
	if (n > sizeof(line) - 2)
		n = sizeof(line) - 2;
	line[n++] = '\n';
	/* One write per line: atomic for pipes up to PIPE_BUF, never torn mid-line by us. */
	if (write(STDERR_FILENO, line, n) < 0) {
		/* Nowhere left to report a failing stderr. */
	}
}
