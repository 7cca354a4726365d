/*
 * util: allocation that dies on OOM, clocks, small string helpers.
 */
#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#ifdef HAVE_MALLOC_TRIM
#include <malloc.h>
#endif
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "orderflow/util.h"

int
util_name_index(const char *const *names, int n, const char *name)
{
	for (int i = 0; name != NULL && i < n; i++)
		if (strcmp(names[i], name) == 0)
			return i;
	return -1;
}

void
util_trim_memory(void)
{
#ifdef HAVE_MALLOC_TRIM
	malloc_trim(0);
#endif
}

/* Out of memory is not survivable for a daemon that must not lose data halfway. */
static NORETURN void
util_oom(size_t size)
{
	fprintf(stderr, "orderflowd: out of memory allocating %zu bytes\n", size);
	abort();
}

void *
xmalloc(size_t size)
{
	void *p = malloc(size ? size : 1);

	if (p == NULL)
		util_oom(size);
	return p;
}

void *
xcalloc(size_t nmemb, size_t size)
{
	void *p = calloc(nmemb ? nmemb : 1, size ? size : 1);

	if (p == NULL)
		util_oom(nmemb * size);
	return p;
}

void *
xrealloc(void *ptr, size_t size)
{
	void *p = realloc(ptr, size ? size : 1);

	if (p == NULL)
		util_oom(size);
	return p;
}

char *
xstrdup(const char *s)
{
	return xstrndup(s, strlen(s));
}

char *
xstrndup(const char *s, size_t n)
{
	char *p = xmalloc(n + 1);

	memcpy(p, s, n);
	p[n] = '\0';
	return p;
}

char *
xvasprintf(const char *fmt, va_list ap)
{
	char *p;

	if (vasprintf(&p, fmt, ap) < 0)
		util_oom(strlen(fmt));
	return p;
}

char *
xasprintf(const char *fmt, ...)
{
	va_list ap;
	char *p;

	va_start(ap, fmt);
	p = xvasprintf(fmt, ap);
	va_end(ap);
	return p;
}

int64_t
util_mono_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

int64_t
util_wall_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void
util_rfc3339(char *buf, size_t size, int64_t wall_ms)
{
	time_t secs = (time_t)(wall_ms / 1000);
	struct tm tm;
	char tmp[24];

	gmtime_r(&secs, &tm);
	strftime(tmp, sizeof(tmp), "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(buf, size, "%s.%03dZ", tmp, (int)(wall_ms % 1000));
}

bool
util_is_ip_literal(const char *s)
{
	unsigned char addr[16];

	return inet_pton(AF_INET, s, addr) == 1 || inet_pton(AF_INET6, s, addr) == 1;
}

/* xorshift is plenty for jitter; it only has to differ between threads. */
static _Thread_local uint64_t util_rng_state;

uint32_t
util_random(void)
{
	uint64_t x = util_rng_state;

	if (x == 0) {
		if (getrandom(&x, sizeof(x), 0) != sizeof(x))
			x = (uint64_t)util_mono_us() ^ (uint64_t)(uintptr_t)&x;
		x |= 1;
	}
	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	util_rng_state = x;
	return (uint32_t)(x >> 16);
}

int64_t
util_jitter(int64_t ms)
{
	int64_t spread = ms / 2;

	if (spread <= 0)
		return ms;
	return ms - ms / 4 + (int64_t)(util_random() % (uint64_t)(spread + 1));
}

size_t
util_json_escape(char *buf, size_t size, const char *s)
{
	size_t n = 0;
	char esc[8];

	for (; *s != '\0'; s++) {
		unsigned char c = (unsigned char)*s;
		const char *out = esc;
		size_t len;

		if (c == '"' || c == '\\') {
			esc[0] = '\\';
			esc[1] = (char)c;
			esc[2] = '\0';
		} else if (c < 0x20) {
			snprintf(esc, sizeof(esc), "\\u%04x", c);
		} else {
			esc[0] = (char)c;
			esc[1] = '\0';
		}
		len = strlen(out);
		if (n + len < size)
			memcpy(buf + n, out, len);
		n += len;
	}
	if (size > 0)
		buf[n < size ? n : size - 1] = '\0';
	return n;
}
