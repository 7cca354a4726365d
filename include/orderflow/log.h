/*
 * log: one logfmt line per event on stderr, ready for journald.
 *
 *   ts=2026-11-23T11:00:00.123Z level=info worker=0 msg="listening" addr=...
 *
 * The level is process-wide and changes on reload; a worker thread tags its
 * lines with its id (log_set_worker).  Each line is written with a single
 * write(2) so lines from different threads never interleave.
 */
#ifndef ORDERFLOW_LOG_H
#define ORDERFLOW_LOG_H

#include <stdbool.h>

#include "orderflow/util.h"

enum log_level {
	LOG_ERROR,	/* something failed and needs a person */
	LOG_WARN,	/* something failed and was handled */
	LOG_INFO,	/* state changes: start, ready, reload, stop */
	LOG_DEBUG,	/* every request and connection event */
};

void log_set_level(enum log_level level);
enum log_level log_get_level(void);
/* Name of a level ("error"...), for config and messages. */
const char *log_level_name(enum log_level level);
/* Tag this thread's lines with worker=id (-1: no tag). */
void log_set_worker(int id);

/*
 * Write msg with extra logfmt fields.  kvfmt is a printf format for
 * "key=value ..." pairs; values that may hold spaces or quotes must go
 * through log_quote().
 */
void log_write(enum log_level level, const char *msg, const char *kvfmt, ...)
	PRINTFLIKE(3, 4);

/* A quoted, escaped copy of s in a per-thread ring (valid for 8 calls). */
const char *log_quote(const char *s);

#define log_at(lvl, msg, ...) do {					\
	if ((lvl) <= log_get_level())					\
		log_write((lvl), (msg), __VA_ARGS__);			\
} while (0)
#define log_error(msg, ...) log_at(LOG_ERROR, msg, __VA_ARGS__)
#define log_warn(msg, ...) log_at(LOG_WARN, msg, __VA_ARGS__)
#define log_info(msg, ...) log_at(LOG_INFO, msg, __VA_ARGS__)
#define log_debug(msg, ...) log_at(LOG_DEBUG, msg, __VA_ARGS__)

#endif
