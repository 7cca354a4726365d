/*
 * migrate: numbered, forward-only SQL migrations.
 */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <libpq-fe.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "orderflow/config.h"
#include "orderflow/log.h"
#include "orderflow/migrate.h"

/* Largest migration file accepted. */
#define MIGRATE_FILE_MAX (16 * 1024 * 1024)
#define MIGRATE_LOCK_KEY "7214000001"	/* pg_advisory_lock key for migrations */

static const char migrate_table_sql[] =
    "CREATE TABLE IF NOT EXISTS schema_migrations ("
    " version integer PRIMARY KEY,"
    " name text NOT NULL,"
    " checksum text NOT NULL,"
    " applied_at timestamptz NOT NULL DEFAULT now())";

/* One migration file found in the directory. */
struct migrate_file {
	int	version;
	char	*name;
};

static int
migrate_cmp(const void *a, const void *b)
{
	const struct migrate_file *x = a, *y = b;

	return (x->version > y->version) - (x->version < y->version);
}

/* NNN_name.sql: three or more digits, an underscore, a name. */
static bool
migrate_parse_name(const char *name, int *version)
{
	size_t digits = strspn(name, "0123456789"), len = strlen(name);

	if (digits < 3 || digits > 6 || name[digits] != '_' || len < digits + 6 ||
	    strcmp(name + len - 4, ".sql") != 0)
		return false;
	*version = atoi(name);
	return *version > 0;
}

static struct migrate_file *
migrate_scan(const char *dir, int *count)
{
	struct migrate_file *files = NULL;
	struct dirent *de;
	DIR *d;
	int n = 0, v;

	if ((d = opendir(dir)) == NULL) {
		log_error("cannot open migrations directory", "dir=%s error=%s", log_quote(dir),
		    log_quote(strerror(errno)));
		return NULL;
	}
	while ((de = readdir(d)) != NULL) {
		if (!migrate_parse_name(de->d_name, &v))
			continue;
		files = xrealloc(files, (size_t)(n + 1) * sizeof(*files));
		files[n].version = v;
		files[n].name = xstrdup(de->d_name);
		n++;
	}
	closedir(d);
	qsort(files, (size_t)n, sizeof(*files), migrate_cmp);
	for (int i = 1; i < n; i++) {
		if (files[i].version == files[i - 1].version) {
			log_error("two migrations share a version", "a=%s b=%s", files[i - 1].name,
			    files[i].name);
			for (int j = 0; j < n; j++)
				free(files[j].name);
			free(files);
			return NULL;
		}
	}
	*count = n;
	return files != NULL ? files : xcalloc(1, sizeof(*files));
}

static char *
migrate_read(const char *dir, const char *name, char checksum[65])
{
	char *path = xasprintf("%s/%s", dir, name), *text = NULL;
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;
	size_t len;
	FILE *f;

	if ((f = fopen(path, "r")) == NULL) {
		log_error("cannot read migration", "file=%s error=%s", log_quote(path),
		    log_quote(strerror(errno)));
		free(path);
		return NULL;
	}
	text = xmalloc(MIGRATE_FILE_MAX + 1);
	len = fread(text, 1, MIGRATE_FILE_MAX + 1, f);
	fclose(f);
	if (len > MIGRATE_FILE_MAX) {
		log_error("migration too large", "file=%s", log_quote(path));
		free(text);
		free(path);
		return NULL;
	}
	text[len] = '\0';
	EVP_Digest(text, len, md, &mdlen, EVP_sha256(), NULL);
	for (unsigned int i = 0; i < mdlen && i < 32; i++)
		snprintf(checksum + 2 * i, 3, "%02x", md[i]);
	free(path);
	return text;
}

/* Run a command; log and return false on failure. */
static bool
migrate_exec(PGconn *conn, const char *sql, const char *what)
{
	PGresult *r = PQexec(conn, sql);
	ExecStatusType st = PQresultStatus(r);
	bool ok = st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK;

	if (!ok)
		log_error("migration step failed", "step=%s error=%s", log_quote(what),
		    log_quote(PQerrorMessage(conn)));
	PQclear(r);
	return ok;
}

/* The checksum recorded for version, "" if it was never applied, NULL on error. */
static char *
migrate_applied(PGconn *conn, int version)
{
	char v[16];
	const char *params[1] = { v };
	PGresult *r;
	char *sum;

	snprintf(v, sizeof(v), "%d", version);
	r = PQexecParams(conn, "SELECT checksum FROM schema_migrations WHERE version = $1",
	    1, NULL, params, NULL, NULL, 0);
	if (PQresultStatus(r) != PGRES_TUPLES_OK) {
		log_error("cannot read schema_migrations", "error=%s", log_quote(PQerrorMessage(conn)));
		PQclear(r);
		return NULL;
	}
	sum = xstrdup(PQntuples(r) > 0 ? PQgetvalue(r, 0, 0) : "");
	PQclear(r);
	return sum;
}

static bool
migrate_apply(PGconn *conn, const char *dir, const struct migrate_file *m, bool *applied)
{
	char checksum[65] = "", v[16], *text, *done;
	const char *params[3];
	PGresult *r;
	bool ok;

	*applied = false;
	if ((text = migrate_read(dir, m->name, checksum)) == NULL)
		return false;
	if ((done = migrate_applied(conn, m->version)) == NULL) {
		free(text);
		return false;
	}
	if (done[0] != '\0') {
		ok = strcmp(done, checksum) == 0;
		if (!ok)
			log_error("migration changed after it was applied", "file=%s", m->name);
		free(done);
		free(text);
		return ok;
	}
	free(done);
	snprintf(v, sizeof(v), "%d", m->version);
	params[0] = v;
	params[1] = m->name;
	params[2] = checksum;
	ok = migrate_exec(conn, "BEGIN", "begin") && migrate_exec(conn, text, m->name);
	if (ok) {
		r = PQexecParams(conn, "INSERT INTO schema_migrations (version, name, checksum) "
		    "VALUES ($1, $2, $3)", 3, NULL, params, NULL, NULL, 0);
		ok = PQresultStatus(r) == PGRES_COMMAND_OK;
		if (!ok)
			log_error("cannot record migration", "file=%s error=%s", m->name,
			    log_quote(PQerrorMessage(conn)));
		PQclear(r);
	}
	ok = ok && migrate_exec(conn, "COMMIT", "commit");
	if (!ok)
		migrate_exec(conn, "ROLLBACK", "rollback");
	*applied = ok;
	free(text);
	return ok;
}

bool
migrate_run(const struct config *cfg)
{
	const char *dir = cfg->postgres.migrations_dir;
	struct migrate_file *files;
	int n = 0, applied = 0;
	bool ok = true, did;
	PGconn *conn;

	if ((files = migrate_scan(dir, &n)) == NULL)
		return false;
	conn = PQconnectdb(cfg->postgres.conninfo);
	if (PQstatus(conn) != CONNECTION_OK) {
		log_error("cannot connect to PostgreSQL", "error=%s", log_quote(PQerrorMessage(conn)));
		ok = false;
	}
	ok = ok && migrate_exec(conn, "SET client_min_messages = warning", "settings") &&
	    migrate_exec(conn, "SELECT pg_advisory_lock(" MIGRATE_LOCK_KEY ")", "lock") &&
	    migrate_exec(conn, migrate_table_sql, "schema_migrations");
	for (int i = 0; ok && i < n; i++) {
		ok = migrate_apply(conn, dir, &files[i], &did);
		if (did) {
			applied++;
			log_info("migration applied", "version=%d file=%s", files[i].version,
			    files[i].name);
		}
	}
	if (ok)
		log_info(applied > 0 ? "migrations applied" : "migrations up to date",
		    "applied=%d known=%d", applied, n);
	for (int i = 0; i < n; i++)
		free(files[i].name);
	free(files);
	PQfinish(conn);
	return ok;
}
