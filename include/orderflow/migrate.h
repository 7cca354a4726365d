/*
 * migrate: apply the numbered SQL migrations (orderflowd --migrate).
 *
 * Runs before and apart from the event loops, so it uses blocking libpq.
 * Files NNN_name.sql in postgres.migrations_dir are applied in order, each
 * in its own transaction together with its row in schema_migrations; an
 * advisory lock keeps two migrators from racing; a file changed after it
 * was applied is an error, not a silent skip.  Called by main.
 */
#ifndef ORDERFLOW_MIGRATE_H
#define ORDERFLOW_MIGRATE_H

#include <stdbool.h>

struct config;

/* Returns true when the schema is up to date. */
bool migrate_run(const struct config *cfg);

#endif
