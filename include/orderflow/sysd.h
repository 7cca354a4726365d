/*
 * sysd: service-manager notifications (sd_notify) for main.
 *
 * Built --with-systemd it talks to NOTIFY_SOCKET through libsystemd;
 * otherwise every call is a no-op, and sysd_init warns once when
 * NOTIFY_SOCKET is set, since systemd would then wait for a READY=1 that
 * never comes.
 */
#ifndef ORDERFLOW_SYSD_H
#define ORDERFLOW_SYSD_H

#include "orderflow/util.h"

void sysd_init(void);
void sysd_ready(void);
void sysd_reloading(void);
void sysd_stopping(void);
void sysd_status(const char *fmt, ...) PRINTFLIKE(1, 2);

#endif
