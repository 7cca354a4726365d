/*
 * util: allocation that dies on OOM, clocks, small string helpers.
 *
 * Everything here is thread-safe and free of I/O; every module uses it.
 */
#ifndef ORDERFLOW_UTIL_H
#define ORDERFLOW_UTIL_H

#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define container_of(ptr, type, member) \
	((type *)(void *)((char *)(ptr) - offsetof(type, member)))
#define MUSTCHECK __attribute__((warn_unused_result))
#define PRINTFLIKE(f, a) __attribute__((format(printf, f, a)))
#define NORETURN __attribute__((noreturn))
#define NELEM(a) (sizeof(a) / sizeof((a)[0]))

/* Allocation: these never return NULL; running out of memory is fatal. */
/*
 * Add n to a counter that only its owning worker writes and others read:
 * a relaxed load and store is enough (readers never see a torn value), and
 * no locked instruction is paid per event.
 */
static inline void
util_count(atomic_ullong *c, unsigned long long n)
{
	atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + n,
	    memory_order_relaxed);
}

void *xmalloc(size_t size);
void *xcalloc(size_t nmemb, size_t size);
void *xrealloc(void *ptr, size_t size);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);
char *xasprintf(const char *fmt, ...) PRINTFLIKE(1, 2);
char *xvasprintf(const char *fmt, va_list ap) PRINTFLIKE(1, 0);

/* Monotonic clock in microseconds, for durations and timers. */
int64_t util_mono_us(void);
/* Wall clock in milliseconds since the epoch, for timestamps people read. */
int64_t util_wall_ms(void);
/* Format wall_ms as RFC 3339 UTC with milliseconds into buf (>= 32 bytes). */
void util_rfc3339(char *buf, size_t size, int64_t wall_ms);

/*
 * Give the pages of freed heap memory back to the system (glibc's
 * malloc_trim; a no-op elsewhere).  For a thread that has just freed a
 * burst's worth, when it is idle: it takes each allocator arena's lock.
 */
void util_trim_memory(void);

/* The index of name among the n names (a name table of an enum), or -1 (also for NULL). */
int util_name_index(const char *const *names, int n, const char *name);

/* True when s is an IPv4 or IPv6 address literal (no name lookup). */
bool util_is_ip_literal(const char *s);
/* Random 32-bit value from a per-thread generator seeded from the OS. */
uint32_t util_random(void);
/* Add +/-25% jitter to a delay so reconnect storms spread out. */
int64_t util_jitter(int64_t ms);

/*
 * Append s to buf as the inside of a JSON string (no quotes), escaping what
 * JSON requires; returns the number of bytes written, or the size needed
 * when buf is too small (like snprintf).
 */
size_t util_json_escape(char *buf, size_t size, const char *s);

#endif
