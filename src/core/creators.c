/*
 * creators: adding and listing tenants.
 */
#include "config.h"

#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "orderflow/cmd.h"
#include "orderflow/config.h"
#include "orderflow/creators.h"
#include "orderflow/util.h"

const char creators_insert_sql[] =
    "WITH c AS (INSERT INTO creators (id, email, display_name)"
    "  VALUES (coalesce($1::uuid, gen_random_uuid()), $2, $3) ON CONFLICT DO NOTHING"
    "  RETURNING id, email, display_name, created_at),"
    " a AS (INSERT INTO audit_log (user_id, actor, action, entity_type, entity_id, after)"
    "  SELECT id, $4, 'creator.created', 'creator', id::text,"
    "  jsonb_build_object('email', email, 'name', display_name) FROM c)"
    " SELECT id::text, json_build_object('id', id, 'email', email, 'name', display_name,"
    " 'created_at', created_at, 'shops', 0)::text FROM c";
const char creators_list_sql[] =
    "SELECT json_build_object('creators', coalesce(json_agg(json_build_object('id', c.id,"
    " 'email', c.email, 'name', c.display_name, 'created_at', c.created_at,"
    " 'shops', (SELECT count(*) FROM shops s WHERE s.creator_id = c.id)) ORDER BY c.id), '[]'),"
    " 'next_after', CASE WHEN count(*) = $1::integer THEN (array_agg(c.id ORDER BY c.id DESC))[1]"
    " END)::text"
    " FROM (SELECT * FROM creators WHERE $2::uuid IS NULL OR id > $2::uuid"
    " ORDER BY id LIMIT $1::integer) c";

/* Characters as PostgreSQL counts them in UTF-8; false on a control byte. */
static bool
creators_chars(const char *s, size_t *chars)
{
	*chars = 0;
	for (; *s != '\0'; s++) {
		if ((unsigned char)*s < 0x20 || *s == 0x7f)
			return false;
		*chars += ((unsigned char)*s & 0xc0) != 0x80;
	}
	return true;
}

const char *
creators_email_check(const char *email)
{
	const char *at = strchr(email, '@');
	size_t chars;

	if (!creators_chars(email, &chars) || chars < 3 || chars > CREATORS_EMAIL_MAX)
		return "the e-mail must be 3 to 320 characters without control characters";
	if (at == NULL || at == email || at[1] == '\0' || strchr(at + 1, '@') != NULL ||
	    strpbrk(email, " \t") != NULL)
		return "the e-mail must look like name@domain, without spaces";
	return NULL;
}

const char *
creators_name_check(const char *name)
{
	size_t chars;

	if (!creators_chars(name, &chars) || chars < 1 || chars > CREATORS_NAME_MAX)
		return "the name must be 1 to 255 characters without control characters";
	return NULL;
}

int
creators_cmd_create(const struct config *cfg, const char *email, const char *name,
    const char *id)
{
	char *local = NULL;
	PGconn *conn;
	PGresult *r;
	int rc = 1;

	if (name == NULL) {
		/* The part before the @ reads better than nothing on the dashboard. */
		local = xstrdup(email);
		local[strcspn(local, "@")] = '\0';
		name = local;
	}
	if ((conn = cmd_pg_connect(cfg)) == NULL) {
		free(local);
		return 1;
	}
	r = PQexecParams(conn, creators_insert_sql, 4, NULL,
	    (const char *[]){ id, email, name, "cli" }, NULL, NULL, 0);
	if (PQresultStatus(r) != PGRES_TUPLES_OK) {
		cmd_pg_error(r, "cannot create the creator", "creators");
	} else if (PQntuples(r) != 1) {
		fprintf(stderr, "orderflowd: a creator with this e-mail%s exists already\n",
		    id != NULL ? " or id" : "");
	} else {
		printf("%s\n", PQgetvalue(r, 0, 0));
		fflush(stdout);
		fprintf(stderr, "orderflowd: creator %s created for %s\n", PQgetvalue(r, 0, 0), email);
		rc = 0;
	}
	PQclear(r);
	PQfinish(conn);
	free(local);
	return rc;
}

int
creators_cmd_list(const struct config *cfg)
{
	PGconn *conn;
	PGresult *r;
	int rc = 1;

	if ((conn = cmd_pg_connect(cfg)) == NULL)
		return 1;
	r = PQexec(conn, "SELECT c.id, c.email, c.display_name, c.created_at,"
	    " (SELECT count(*) FROM shops s WHERE s.creator_id = c.id)"
	    " FROM creators c ORDER BY c.created_at, c.id");
	if (PQresultStatus(r) != PGRES_TUPLES_OK) {
		cmd_pg_error(r, "cannot list the creators", "creators");
	} else {
		printf("ID\tEMAIL\tNAME\tCREATED\tSHOPS\n");
		for (int i = 0; i < PQntuples(r); i++)
			printf("%s\t%s\t%s\t%s\t%s\n", PQgetvalue(r, i, 0), PQgetvalue(r, i, 1),
			    PQgetvalue(r, i, 2), PQgetvalue(r, i, 3), PQgetvalue(r, i, 4));
		rc = 0;
	}
	PQclear(r);
	PQfinish(conn);
	return rc;
}
