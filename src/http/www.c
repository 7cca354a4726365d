/*
 * www: the dashboard's static files, served from memory (see www.h).
 */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "orderflow/config.h"
#include "orderflow/httpd.h"
#include "orderflow/util.h"
#include "orderflow/worker.h"
#include "orderflow/www.h"

/*
 * No inline script or style, no plug-ins, no framing, and the API only on
 * this origin: a script injected through an order's text has nowhere to run.
 */
#define WWW_CSP "default-src 'none'; script-src 'self'; style-src 'self'; " \
	"img-src 'self' data:; connect-src 'self'; font-src 'self'; manifest-src 'self'; " \
	"base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
#define WWW_NAME_MAX 128	/* one path segment */
#define WWW_PATH_MAX 1024

struct www_file {
	char		*path;		/* "/app.js" */
	const char	*type;		/* Content-Type */
	char		*body;
	size_t		len;
	char		*gz;		/* gzip copy, or NULL when it would not be smaller */
	size_t		gzlen;
	char		etag[40];	/* "\"<32 hex>\"" */
};

struct www_site {
	struct www_file	*files;		/* sorted by path */
	size_t		n, cap;
	size_t		total;
};

struct www_type {
	const char	*ext;
	const char	*type;
	bool		text;		/* worth compressing */
};

static const struct www_type www_types[] = {
	{ ".html", "text/html; charset=utf-8", true },
	{ ".js", "text/javascript; charset=utf-8", true },
	{ ".mjs", "text/javascript; charset=utf-8", true },
	{ ".css", "text/css; charset=utf-8", true },
	{ ".json", "application/json", true },
	{ ".map", "application/json", true },
	{ ".webmanifest", "application/manifest+json", true },
	{ ".svg", "image/svg+xml", true },
	{ ".txt", "text/plain; charset=utf-8", true },
	{ ".png", "image/png", false },
	{ ".ico", "image/x-icon", false },
	{ ".webp", "image/webp", false },
	{ ".woff2", "font/woff2", false },
};

static const struct www_type *
www_type_of(const char *name)
{
	size_t n = strlen(name);

	for (size_t i = 0; i < NELEM(www_types); i++) {
		size_t e = strlen(www_types[i].ext);

		if (n > e && strcasecmp(name + n - e, www_types[i].ext) == 0)
			return &www_types[i];
	}
	return NULL;
}

/* Letters, digits, '.', '-', '_', not starting with '.': nothing hidden, nothing to escape. */
static bool
www_name_ok(const char *name)
{
	size_t n = strlen(name);

	if (n == 0 || n > WWW_NAME_MAX || name[0] == '.')
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = name[i];

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		    c == '.' || c == '-' || c == '_'))
			return false;
	}
	return true;
}

/* gzip of body, kept only when it saves at least a twentieth. */
static void
www_gzip(struct www_file *f)
{
	z_stream z = { 0 };
	uLong bound;

	if (deflateInit2(&z, 9, Z_DEFLATED, 15 + 16, 9, Z_DEFAULT_STRATEGY) != Z_OK)
		return;
	bound = deflateBound(&z, (uLong)f->len) + 32;
	f->gz = xmalloc(bound);
	z.next_in = (Bytef *)f->body;
	z.avail_in = (uInt)f->len;
	z.next_out = (Bytef *)f->gz;
	z.avail_out = (uInt)bound;
	if (deflate(&z, Z_FINISH) != Z_STREAM_END || z.total_out >= f->len - f->len / 20) {
		free(f->gz);
		f->gz = NULL;
	} else {
		f->gzlen = z.total_out;
	}
	deflateEnd(&z);
}

static void
www_etag(struct www_file *f)
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;
	static const char hex[] = "0123456789abcdef";

	EVP_Digest(f->body, f->len, md, &mdlen, EVP_sha256(), NULL);
	f->etag[0] = '"';
	for (int i = 0; i < 16; i++) {
		f->etag[1 + 2 * i] = hex[md[i] >> 4];
		f->etag[2 + 2 * i] = hex[md[i] & 15];
	}
	f->etag[33] = '"';
	f->etag[34] = '\0';
}

/* Read one regular file opened without following a link. */
static char *
www_read(int dirfd, const char *name, size_t *len, char **cause)
{
	int fd = openat(dirfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	struct stat st;
	char *buf;
	size_t got = 0;

	if (fd < 0) {
		*cause = xasprintf("%s: %s", name, strerror(errno));
		return NULL;
	}
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size > WWW_MAX_FILE) {
		*cause = xasprintf("%s: not a regular file of at most %d bytes", name, WWW_MAX_FILE);
		close(fd);
		return NULL;
	}
	buf = xmalloc((size_t)st.st_size + 1);
	while (got < (size_t)st.st_size) {
		ssize_t r = read(fd, buf + got, (size_t)st.st_size - got);

		if (r <= 0) {
			*cause = xasprintf("%s: %s", name, r < 0 ? strerror(errno) : "file shrank");
			free(buf);
			close(fd);
			return NULL;
		}
		got += (size_t)r;
	}
	close(fd);
	*len = got;
	return buf;
}

static bool
www_add(struct www_site *s, int dirfd, const char *prefix, const char *name, char **cause)
{
	const struct www_type *t = www_type_of(name);
	struct www_file *f;
	size_t len;
	char *body;

	if (s->n == WWW_MAX_FILES) {
		*cause = xasprintf("more than %d files", WWW_MAX_FILES);
		return false;
	}
	if ((body = www_read(dirfd, name, &len, cause)) == NULL)
		return false;
	if (s->total + len > WWW_MAX_TOTAL) {
		*cause = xasprintf("more than %d bytes in all", WWW_MAX_TOTAL);
		free(body);
		return false;
	}
	if (s->n == s->cap) {
		s->cap = s->cap == 0 ? 32 : s->cap * 2;
		s->files = xrealloc(s->files, s->cap * sizeof(*s->files));
	}
	f = &s->files[s->n++];
	memset(f, 0, sizeof(*f));
	f->path = xasprintf("%s/%s", prefix, name);
	f->type = t != NULL ? t->type : "application/octet-stream";
	f->body = body;
	f->len = len;
	s->total += len;
	www_etag(f);
	if (t != NULL && t->text && len > 256)
		www_gzip(f);
	return true;
}

static bool www_walk(struct www_site *s, int dirfd, const char *prefix, int depth, char **cause);

static bool
www_entry(struct www_site *s, int dirfd, const char *prefix, const char *name, int depth,
    char **cause)
{
	struct stat st;
	char *sub;
	int fd;
	bool ok;

	if (!www_name_ok(name) || fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) != 0)
		return true;	/* hidden, oddly named or gone: not part of the site */
	if (S_ISREG(st.st_mode))
		return www_add(s, dirfd, prefix, name, cause);
	if (!S_ISDIR(st.st_mode))
		return true;
	if (depth >= WWW_MAX_DEPTH) {
		*cause = xasprintf("%s/%s: deeper than %d levels", prefix, name, WWW_MAX_DEPTH);
		return false;
	}
	if ((fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)) < 0) {
		*cause = xasprintf("%s/%s: %s", prefix, name, strerror(errno));
		return false;
	}
	sub = xasprintf("%s/%s", prefix, name);
	ok = strlen(sub) < WWW_PATH_MAX ? www_walk(s, fd, sub, depth + 1, cause) :
	    (*cause = xasprintf("%s: path too long", sub), false);
	free(sub);
	return ok;
}

/* Walk dirfd (closed here); prefix is its request path ("" for the root). */
static bool
www_walk(struct www_site *s, int dirfd, const char *prefix, int depth, char **cause)
{
	DIR *d = fdopendir(dirfd);
	struct dirent *de;
	bool ok = true;

	if (d == NULL) {
		*cause = xasprintf("%s/: %s", prefix, strerror(errno));
		close(dirfd);
		return false;
	}
	while (ok && (de = readdir(d)) != NULL)
		ok = www_entry(s, dirfd, prefix, de->d_name, depth, cause);
	closedir(d);
	return ok;
}

static int
www_cmp(const void *a, const void *b)
{
	return strcmp(((const struct www_file *)a)->path, ((const struct www_file *)b)->path);
}

struct www_site *
www_site_load(const char *root, char **warning, char **cause)
{
	struct www_site *s = xcalloc(1, sizeof(*s));
	int fd;

	*warning = NULL;
	if ((fd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0) {
		if (errno != ENOENT) {
			*cause = xasprintf("www.root %s: %s", root, strerror(errno));
			free(s);
			return NULL;
		}
		*warning = xasprintf("www.root %s does not exist: no dashboard page is served", root);
		return s;
	}
	if (!www_walk(s, fd, "", 0, cause)) {
		char *inner = *cause;

		*cause = xasprintf("www.root %s: %s", root, inner);
		free(inner);
		www_site_free(s);
		return NULL;
	}
	qsort(s->files, s->n, sizeof(*s->files), www_cmp);
	return s;
}

void
www_site_free(struct www_site *s)
{
	if (s == NULL)
		return;
	for (size_t i = 0; i < s->n; i++) {
		free(s->files[i].path);
		free(s->files[i].body);
		free(s->files[i].gz);
	}
	free(s->files);
	free(s);
}

size_t
www_site_files(const struct www_site *s)
{
	return s != NULL ? s->n : 0;
}

static const struct www_file *
www_find(const struct www_site *s, const char *path)
{
	struct www_file key = { .path = (char *)(strcmp(path, "/") == 0 ? "/index.html" : path) };

	if (s == NULL || s->n == 0)
		return NULL;
	return bsearch(&key, s->files, s->n, sizeof(*s->files), www_cmp);
}

bool
www_claims(const struct www_site *s, const char *path)
{
	return www_find(s, path) != NULL;
}

/* The next comma-separated element of a header list, trimmed; NULL at the end. */
static const char *
www_next_item(const char **p, size_t *len)
{
	const char *s = *p, *e;

	while (*s == ' ' || *s == '\t' || *s == ',')
		s++;
	if (*s == '\0')
		return NULL;
	e = s + strcspn(s, ",");
	*p = e;
	while (e > s && (e[-1] == ' ' || e[-1] == '\t'))
		e--;
	*len = (size_t)(e - s);
	return s;
}

/* Accept-Encoding names gzip (or *) without q=0 (RFC 9110 section 12.5.3). */
static bool
www_accepts_gzip(const char *ae)
{
	const char *item;
	size_t len;

	while (ae != NULL && (item = www_next_item(&ae, &len)) != NULL) {
		size_t name = strcspn(item, "; \t");
		const char *q;

		if (name > len)
			name = len;
		if (!((name == 4 && strncasecmp(item, "gzip", 4) == 0) || (name == 1 && *item == '*')))
			continue;
		q = memchr(item, ';', len) != NULL ? strstr(item, "q=") : NULL;
		if (q != NULL && q < item + len && strtod(q + 2, NULL) <= 0.0)
			return false;
		return true;
	}
	return false;
}

/* If-None-Match lists our tag (weak comparison, RFC 9110 section 13.1.2) or is "*". */
static bool
www_not_modified(const char *inm, const char *etag)
{
	const char *item;
	size_t len, elen = strlen(etag);

	while (inm != NULL && (item = www_next_item(&inm, &len)) != NULL) {
		if (len >= 2 && strncmp(item, "W/", 2) == 0) {
			item += 2;
			len -= 2;
		}
		if ((len == 1 && *item == '*') || (len == elen && memcmp(item, etag, elen) == 0))
			return true;
	}
	return false;
}

static void
www_headers(struct evkeyvalq *out, const struct www_file *f)
{
	evhttp_add_header(out, "Content-Security-Policy", WWW_CSP);
	evhttp_add_header(out, "X-Content-Type-Options", "nosniff");
	evhttp_add_header(out, "X-Frame-Options", "DENY");
	evhttp_add_header(out, "Referrer-Policy", "no-referrer");
	evhttp_add_header(out, "Cross-Origin-Opener-Policy", "same-origin");
	/* Revalidate every time: the files are not fingerprinted, an upgrade must show at once. */
	evhttp_add_header(out, "Cache-Control", "no-cache");
	evhttp_add_header(out, "ETag", f->etag);
	if (f->gz != NULL)
		evhttp_add_header(out, "Vary", "Accept-Encoding");
}

void
www_serve(struct httpd_req *hr)
{
	struct evhttp_request *req = hr->req;
	struct evkeyvalq *in = evhttp_request_get_input_headers(req);
	struct evkeyvalq *out = evhttp_request_get_output_headers(req);
	enum evhttp_cmd_type cmd = evhttp_request_get_command(req);
	const struct www_file *f = www_find(hr->w->cfg->site, hr->path);
	bool gz;

	if (f == NULL) {
		httpd_error(hr, 404, "not_found", "no such resource: %s", hr->path);
		return;
	}
	if (cmd != EVHTTP_REQ_GET && cmd != EVHTTP_REQ_HEAD) {
		evhttp_add_header(out, "Allow", "GET, HEAD");
		httpd_error(hr, 405, "method_not_allowed", "%s is a file: only GET and HEAD", hr->path);
		return;
	}
	www_headers(out, f);
	if (www_not_modified(evhttp_find_header(in, "If-None-Match"), f->etag)) {
		httpd_reply(hr, 304, f->type, "", 0);
		return;
	}
	gz = f->gz != NULL && www_accepts_gzip(evhttp_find_header(in, "Accept-Encoding"));
	if (gz)
		evhttp_add_header(out, "Content-Encoding", "gzip");
	httpd_reply(hr, 200, f->type, gz ? f->gz : f->body, gz ? f->gzlen : f->len);
}
