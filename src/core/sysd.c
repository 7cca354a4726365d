/*
 * sysd: sd_notify wrappers.
 */
#include "config.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#ifdef HAVE_SYSTEMD
#include <systemd/sd-daemon.h>
#endif

#include "orderflow/log.h"
#include "orderflow/sysd.h"

void
sysd_init(void)
{
#ifndef HAVE_SYSTEMD
	if (getenv("NOTIFY_SOCKET") != NULL)
		log_warn("NOTIFY_SOCKET is set but orderflowd was built without systemd support",
		    "hint=%s", log_quote("rebuild with ./configure --with-systemd, or use Type=simple"));
#endif
}

#ifdef HAVE_SYSTEMD
static void
sysd_send(const char *state)
{
	int rc = sd_notify(0, state);

	if (rc < 0)
		log_warn("sd_notify failed", "state=%s rc=%d", log_quote(state), rc);
}
#endif

void
sysd_ready(void)
{
#ifdef HAVE_SYSTEMD
	sysd_send("READY=1");
#endif
}

void
sysd_reloading(void)
{
#ifdef HAVE_SYSTEMD
	struct timespec ts;
	char buf[64];

	/* systemd >= 253 matches RELOADING=1 with the time it was sent. */
	clock_gettime(CLOCK_MONOTONIC, &ts);
	snprintf(buf, sizeof(buf), "RELOADING=1\nMONOTONIC_USEC=%llu",
	    (unsigned long long)ts.tv_sec * 1000000ULL + (unsigned long long)ts.tv_nsec / 1000);
	sysd_send(buf);
#endif
}

void
sysd_stopping(void)
{
#ifdef HAVE_SYSTEMD
	sysd_send("STOPPING=1");
#endif
}

void
sysd_status(const char *fmt, ...)
{
#ifdef HAVE_SYSTEMD
	char buf[256] = "STATUS=";
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf + 7, sizeof(buf) - 7, fmt, ap);
	va_end(ap);
	sysd_send(buf);
#else
	(void)fmt;
#endif
}
