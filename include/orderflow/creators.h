/*
 * creators: the tenants, made and listed by the operator.
 *
 * Owns the rules a creator's e-mail and display name meet (the database's
 * CHECKs, said first in words) and the statements that add and list them;
 * used by the one-shot commands --create-creator and --list-creators (main,
 * blocking libpq) and by the operator API /api/admin/creators (admin).
 * A creator's id is what a JWT's sub and an API key are bound to: give a
 * Supabase Auth user's UUID as the id and its tokens sign in as it.
 */
#ifndef ORDERFLOW_CREATORS_H
#define ORDERFLOW_CREATORS_H

#include <stdbool.h>

struct config;

#define CREATORS_EMAIL_MAX 320
#define CREATORS_NAME_MAX 255

/*
 * INSERT, audited: $1 id or NULL, $2 e-mail, $3 name, $4 actor; returns
 * (id, the row as JSON text), or no row when the e-mail or id is taken.
 */
extern const char creators_insert_sql[];
/* The creators as JSON text {"creators":[...]}: $1 limit, $2 after this id or NULL. */
extern const char creators_list_sql[];

/* NULL when the e-mail is acceptable, else why not. */
const char *creators_email_check(const char *email);
/* NULL when the display name is acceptable, else why not. */
const char *creators_name_check(const char *name);

/* --create-creator EMAIL [--name NAME] [--creator-id UUID]; prints the new id. */
int creators_cmd_create(const struct config *cfg, const char *email, const char *name,
    const char *id);
/* --list-creators: one tab-separated line each. */
int creators_cmd_list(const struct config *cfg);

#endif
