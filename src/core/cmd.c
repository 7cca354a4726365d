/*
 * cmd: blocking PostgreSQL for the one-shot commands.
 */
#include "config.h"

#include <stdio.h>
#include <string.h>

#include "orderflow/cmd.h"
#include "orderflow/config.h"

PGconn *
cmd_pg_connect(const struct config *cfg)
{
	PGconn *conn = PQconnectdb(cfg->postgres.conninfo);

	if (PQstatus(conn) != CONNECTION_OK) {
		fprintf(stderr, "orderflowd: cannot connect to PostgreSQL: %s", PQerrorMessage(conn));
		PQfinish(conn);
		return NULL;
	}
	return conn;
}

void
cmd_pg_error(PGresult *r, const char *what, const char *table)
{
	const char *state = PQresultErrorField(r, PG_DIAG_SQLSTATE);

	if (state != NULL && strcmp(state, "42P01") == 0)
		fprintf(stderr, "orderflowd: %s: the %s table does not exist: "
		    "run orderflowd --migrate first\n", what, table);
	else
		fprintf(stderr, "orderflowd: %s: %s", what, PQresultErrorMessage(r));
}
