/*
 * www: the dashboard's static files, served from memory.
 *
 * www_site_load reads every regular file under www.root once (at start
 * and on SIGHUP, on the main thread, with the config it belongs to: see
 * config.site), computes its ETag and, for text, a gzip copy.  Requests
 * never touch the disk, and only files that were found by walking the
 * directory can be answered: a path is looked up as a string among them,
 * so "..", encoded bytes or a NUL cannot reach anything else.  Names are
 * restricted to letters, digits, '.', '-' and '_' (no dot files), links
 * are not followed.
 *
 * Answers carry a strict Content-Security-Policy (no inline script or
 * style), Cache-Control: no-cache with a strong ETag (a revalidation is a
 * 304), and the gzip copy to clients that accept it.  httpd calls
 * www_claims for a path no route took, then www_serve.
 */
#ifndef ORDERFLOW_WWW_H
#define ORDERFLOW_WWW_H

#include <stdbool.h>
#include <stddef.h>

struct httpd_req;
struct www_site;

/* Limits of what is loaded: a dashboard, not a file server. */
#define WWW_MAX_FILES	512
#define WWW_MAX_FILE	(4 * 1024 * 1024)
#define WWW_MAX_TOTAL	(32 * 1024 * 1024)
#define WWW_MAX_DEPTH	8

/*
 * Load the files under root.  A missing directory is an empty site (the
 * API runs without a page) and *warning says so; NULL and *cause when the
 * directory exceeds the limits or cannot be read.
 */
struct www_site *www_site_load(const char *root, char **warning, char **cause);
void www_site_free(struct www_site *site);
size_t www_site_files(const struct www_site *site);

/* The site has a file for this request path ("/" is /index.html). */
bool www_claims(const struct www_site *site, const char *path);
/* Answer hr from the site of its worker's config (GET and HEAD; else 405). */
void www_serve(struct httpd_req *hr);

#endif
