/*
 * cmd: what the one-shot commands share (the API key and creator commands
 * of main and creators): a blocking PostgreSQL connection and the way a
 * failed statement is reported.  They run instead of the daemon, so
 * blocking libpq is right here and nowhere else.
 */
#ifndef ORDERFLOW_CMD_H
#define ORDERFLOW_CMD_H

#include <libpq-fe.h>

struct config;

/* Connect with postgres.conninfo; NULL after saying why on stderr. */
PGconn *cmd_pg_connect(const struct config *cfg);
/* Report a failed statement; a missing `table` means --migrate was not run. */
void cmd_pg_error(PGresult *r, const char *what, const char *table);

#endif
