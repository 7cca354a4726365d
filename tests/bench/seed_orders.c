/*
 * seed_orders - load realistic creators, shops and orders into an orderflow
 * database with COPY, for benchmarks and for trying the dashboard API.
 *
 * Usage: seed_orders -d CONNINFO [--orders N] [--creators N] [--big-creator N]
 *                    [--items AVG] [--days N] [--seed S] [--jobs N]
 *                    [--creators-out FILE] [--keep-indexes | --rebuild-indexes]
 *                    [--quiet]
 *
 * The database must carry the orderflow schema (orderflowd --migrate).  The
 * tool adds, and never touches existing rows:
 *   - --creators creators (email seed-S-NNNNNN@orderflow.test), plus one more
 *     with --big-creator N > 0, each with one active shop (unique
 *     tiktok_shop_id, app_key and app_secret, no access token);
 *   - --orders orders in all (the big creator's N included; the rest spread
 *     over the others with a skew, so some creators are much bigger than
 *     others), their order dates spread over the last --days days, oldest
 *     first, creators interleaved as real traffic would be;
 *   - order_items: 1..6 lines per order, --items on average (a truncated
 *     Poisson), SKUs from a catalog of about 400, popular ones more often;
 *   - one order_status_history row per order (change_source 'tiktok_shop').
 * Statuses follow the order's age (recent orders are pending, confirmed or
 * processing, older ones mostly delivered, some cancelled or returned) and
 * the dates follow the status (shipped_date only once shipped, and so on).
 * subtotal is the sum of the lines' total_price (quantity * unit_price) and
 * total_amount = subtotal + tax + shipping_cost.
 *
 * Everything is derived from --seed: the same seed gives the same ids,
 * emails, amounts and statuses (dates are relative to the time of the run).
 * Ids (uuid v4) are made here, so lines can name their order without a round
 * trip.  Order ids (tiktok_order_id, order_number, tiktok_shop_id) embed the
 * seed modulo 10000, so runs whose seeds differ modulo 10000 can fill the
 * same database; repeating a seed there fails on the unique constraints
 * (and leaves nothing behind).
 *
 * How: creators and shops are copied and committed first; then --jobs
 * connections (default: one per CPU, at most 8) each copy a contiguous range
 * of orders in chunks (orders, then their items, then their history rows,
 * in text format through large PQputCopyData buffers), all in one
 * transaction per connection.  The transactions commit only once every job
 * has succeeded; on any error, SIGINT or SIGTERM they roll back and the new
 * creators are deleted again (ON DELETE CASCADE takes the rest).  Every
 * constraint of the schema holds, the composite foreign keys (order_id,
 * user_id) and (shop_id, user_id) included; PostgreSQL checks them as usual.
 *
 * Bulk-load measures, as pg_restore takes them: from 100,000 orders on, and
 * unless the orders table already holds more rows than the run adds, the
 * indexes of orders, order_items and order_status_history that back no
 * constraint (the dashboard's sort and search indexes) are dropped before
 * the load and created again, with the same names and definitions, at the
 * end (also after a failure); --keep-indexes keeps them, --rebuild-indexes
 * drops them whatever the sizes.  While they are
 * missing, dashboard queries on the same database are slow; a seed_orders
 * killed with SIGKILL leaves them missing (it prints their definitions when
 * it cannot rebuild them).  As superuser, the load sets wal_compression for
 * its own sessions.  Then the summary counters the load's triggers queued
 * (order_stats_delta) are folded, and finally ANALYZE on the six tables.
 *
 * Progress goes to stderr; at the end one line goes to stdout:
 *   seeded orders=N items=M creators=C seconds=S orders_per_s=R
 * --creators-out FILE writes "creator_id<TAB>email<TAB>orders" per creator.
 * Exit status: 0 done, 1 error (nothing seeded), 2 usage error.
 */
#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>		/* isfinite only: no libm */
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <libpq-fe.h>

#define SEED_MAX_ORDERS		100000000ULL	/* --orders upper bound */
#define SEED_MAX_CREATORS	1000000ULL	/* --creators upper bound */
#define SEED_MAX_DAYS		3650ULL		/* --days upper bound */
#define SEED_MAX_JOBS		16ULL		/* --jobs upper bound */
#define SEED_ITEMS_MIN		1.0		/* --items lower bound */
#define SEED_ITEMS_MAX		5.0		/* --items upper bound */
#define SEED_MAX_LINES		6		/* lines per order: 1..SEED_MAX_LINES */
#define SEED_CATALOG_SKUS	400		/* SKUs in the catalog */
#define SEED_CHUNK		20000		/* orders per COPY round */
#define SEED_MIN_PER_JOB	1000		/* fewer orders per job: fewer jobs */
#define SEED_SEND_BYTES		(1 << 20)	/* bytes per PQputCopyData call */
#define SEED_ORDER_ROOM		4096		/* buffer room reserved per order row */
#define SEED_ITEM_ROOM		1024		/* buffer room reserved per line row */
#define SEED_DAY		86400LL		/* seconds in a day */
#define SEED_DROP_INDEXES_FROM	100000		/* --orders from which indexes are rebuilt */

/* The command line. */
struct seed_opts {
	const char	*conninfo;	/* -d: libpq connection string */
	uint64_t	 orders;	/* --orders: total orders */
	uint64_t	 creators;	/* --creators: regular creators */
	uint64_t	 big;		/* --big-creator: orders of the extra creator */
	double		 items;		/* --items: average lines per order */
	uint64_t	 days;		/* --days: order dates spread over this */
	uint64_t	 seed;		/* --seed: everything derives from it */
	uint64_t	 jobs;		/* --jobs: parallel connections */
	const char	*creators_out;	/* --creators-out: file, or NULL */
	int		 indexes;	/* --keep-indexes -1, --rebuild-indexes 1, else 0 */
	bool		 quiet;		/* --quiet: no progress lines */
};

/* One creator and its shop. */
struct seed_creator {
	uint8_t		 id[16];	/* creators.id */
	uint8_t		 shop_id[16];	/* shops.id */
	uint64_t	 orders;	/* orders it holds */
	char		 email[64];	/* creators.email */
};

/* One SKU of the catalog. */
struct seed_sku {
	char		 product_id[24];	/* tiktok_product_id */
	char		 sku_id[24];		/* sku_id */
	char		 product_name[64];	/* product_name */
	char		 variant_name[32];	/* variant_name */
	char		 product_sku[32];	/* product_sku = seller_sku */
	int64_t		 cents;			/* unit price */
};

/* A growable byte buffer (one COPY stream's data). */
struct seed_buf {
	char		*data;		/* bytes */
	size_t		 len;		/* used */
	size_t		 cap;		/* allocated */
};

/* One job: a connection copying orders [lo, hi). */
struct seed_job {
	int		 no;		/* job number, for messages */
	PGconn		*conn;		/* its own connection */
	uint64_t	 lo;		/* first order index */
	uint64_t	 hi;		/* one past the last */
	uint64_t	 items;		/* lines copied */
	bool		 ok;		/* finished without error */
	char		 err[512];	/* first error, when !ok */
	pthread_t	 thread;	/* the thread running seed_job_run or seed_index_run */
	bool		 threaded;	/* thread was started (and is to be joined) */
	struct seed_buf	 orders;	/* chunk of orders rows */
	struct seed_buf	 lines;		/* chunk of order_items rows */
	struct seed_buf	 history;	/* chunk of order_status_history rows */
};

/* A splitmix64 generator: one per order, so any order can be made alone. */
struct seed_rng {
	uint64_t	 s;		/* state */
};

static struct seed_opts		 seed_opt;
static struct seed_creator	*seed_creators;		/* regular ones, then the big one */
static uint64_t			 seed_ncreators;	/* entries in seed_creators */
static uint32_t			*seed_slots;		/* creator index of each order */
static struct seed_sku		 seed_catalog[SEED_CATALOG_SKUS];
static double			 seed_lines_cdf[SEED_MAX_LINES];	/* P(lines <= k+1) */
static int64_t			 seed_now;		/* time of the run (Unix seconds) */
static unsigned			 seed_tag;		/* seed % 10000, in external ids */
static uint64_t			 seed_offset;		/* scrambles external ids */
static atomic_uint_fast64_t	 seed_done;		/* orders copied so far */
static atomic_bool		 seed_abort;		/* a job failed: others stop */
static bool			 seed_out_written;	/* --creators-out is complete */

/* "seed_orders: <message>\n" on stderr. */
static void __attribute__((format(printf, 1, 0)))
seed_vsay(const char *fmt, va_list ap)
{
	fputs("seed_orders: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
}

/* Exit 2 with a message and the usage line. */
static void __attribute__((noreturn, format(printf, 1, 2)))
seed_usage_error(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	seed_vsay(fmt, ap);
	va_end(ap);
	fputs("usage: seed_orders -d CONNINFO [--orders N] [--creators N] [--big-creator N]\n"
	    "           [--items AVG] [--days N] [--seed S] [--jobs N] [--creators-out FILE]\n"
	    "           [--keep-indexes | --rebuild-indexes] [--quiet]\n", stderr);
	exit(2);
}

/* Exit 1 with a message. */
static void __attribute__((noreturn, format(printf, 1, 2)))
seed_fatal(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	seed_vsay(fmt, ap);
	va_end(ap);
	exit(1);
}

/* A progress line on stderr (unless --quiet). */
static void __attribute__((format(printf, 1, 2)))
seed_progress(const char *fmt, ...)
{
	va_list ap;

	if (seed_opt.quiet)
		return;
	va_start(ap, fmt);
	seed_vsay(fmt, ap);
	va_end(ap);
}

/* Monotonic seconds. */
static double
seed_clock(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* An unsigned decimal option value in lo..hi, or a usage error. */
static uint64_t
seed_parse_u64(const char *name, const char *s, uint64_t lo, uint64_t hi)
{
	unsigned long long v;
	char *end;

	errno = 0;
	if (!isdigit((unsigned char)s[0]))
		seed_usage_error("%s: expected an integer in %" PRIu64 "..%" PRIu64 ", got \"%s\"",
		    name, lo, hi, s);
	v = strtoull(s, &end, 10);
	if (*end != '\0' || errno != 0 || v < lo || v > hi)
		seed_usage_error("%s: expected an integer in %" PRIu64 "..%" PRIu64 ", got \"%s\"",
		    name, lo, hi, s);
	return v;
}

/* A decimal number option value in lo..hi, or a usage error. */
static double
seed_parse_double(const char *name, const char *s, double lo, double hi)
{
	char *end;
	double v;

	errno = 0;
	if (!isdigit((unsigned char)s[0]))
		seed_usage_error("%s: expected a number in %.1f..%.1f, got \"%s\"", name, lo, hi, s);
	v = strtod(s, &end);
	if (*end != '\0' || errno != 0 || !isfinite(v) || v < lo || v > hi)
		seed_usage_error("%s: expected a number in %.1f..%.1f, got \"%s\"", name, lo, hi, s);
	return v;
}

/* Fill seed_opt from argv; usage errors exit 2. */
static void
seed_parse_args(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "conninfo", required_argument, NULL, 'd' },
		{ "orders", required_argument, NULL, 'o' },
		{ "creators", required_argument, NULL, 'c' },
		{ "big-creator", required_argument, NULL, 'b' },
		{ "items", required_argument, NULL, 'i' },
		{ "days", required_argument, NULL, 'D' },
		{ "seed", required_argument, NULL, 's' },
		{ "jobs", required_argument, NULL, 'j' },
		{ "creators-out", required_argument, NULL, 'O' },
		{ "keep-indexes", no_argument, NULL, 'K' },
		{ "rebuild-indexes", no_argument, NULL, 'R' },
		{ "quiet", no_argument, NULL, 'q' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 }
	};
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	bool big_given = false;
	int ch;

	seed_opt.orders = 1000000;
	seed_opt.creators = 1000;
	seed_opt.items = 2.5;
	seed_opt.days = 365;
	seed_opt.seed = 1;
	seed_opt.jobs = ncpu < 1 ? 1 : ncpu > 8 ? 8 : (uint64_t)ncpu;
	opterr = 0;
	while ((ch = getopt_long(argc, argv, ":d:qh", longopts, NULL)) != -1) {
		switch (ch) {
		case 'd':
			if (optarg[0] == '\0')
				seed_usage_error("-d: the connection string is empty");
			seed_opt.conninfo = optarg;
			break;
		case 'o':
			seed_opt.orders = seed_parse_u64("--orders", optarg, 0, SEED_MAX_ORDERS);
			break;
		case 'c':
			seed_opt.creators = seed_parse_u64("--creators", optarg, 1, SEED_MAX_CREATORS);
			break;
		case 'b':
			seed_opt.big = seed_parse_u64("--big-creator", optarg, 0, SEED_MAX_ORDERS);
			big_given = true;
			break;
		case 'i':
			seed_opt.items = seed_parse_double("--items", optarg, SEED_ITEMS_MIN,
			    SEED_ITEMS_MAX);
			break;
		case 'D':
			seed_opt.days = seed_parse_u64("--days", optarg, 1, SEED_MAX_DAYS);
			break;
		case 's':
			seed_opt.seed = seed_parse_u64("--seed", optarg, 0, UINT64_MAX);
			break;
		case 'j':
			seed_opt.jobs = seed_parse_u64("--jobs", optarg, 1, SEED_MAX_JOBS);
			break;
		case 'O':
			if (optarg[0] == '\0')
				seed_usage_error("--creators-out: the file name is empty");
			seed_opt.creators_out = optarg;
			break;
		case 'K':
			seed_opt.indexes = -1;
			break;
		case 'R':
			seed_opt.indexes = 1;
			break;
		case 'q':
			seed_opt.quiet = true;
			break;
		case 'h':
			printf("usage: seed_orders -d CONNINFO [--orders N (1000000)] [--creators N (1000)]\n"
			    "           [--big-creator N (0)] [--items AVG (2.5)] [--days N (365)]\n"
			    "           [--seed S (1)] [--jobs N (CPUs, max 8)] [--creators-out FILE]\n"
			    "           [--keep-indexes | --rebuild-indexes] [--quiet]\n");
			exit(0);
		case ':':
			seed_usage_error("%s needs a value", argv[optind - 1]);
		default:
			if (optopt != 0)
				seed_usage_error("unknown option -%c", optopt);
			seed_usage_error("unknown option %s", argv[optind - 1]);
		}
	}
	if (optind < argc)
		seed_usage_error("unexpected argument \"%s\"", argv[optind]);
	if (seed_opt.conninfo == NULL)
		seed_usage_error("-d CONNINFO is required");
	if (big_given && seed_opt.big > seed_opt.orders)
		seed_usage_error("--big-creator %" PRIu64 ": more than --orders (%" PRIu64 "); "
		    "the big creator's orders are part of --orders", seed_opt.big, seed_opt.orders);
}

/* ------------------------------------------------------------------------ */
/* Random numbers */

/* splitmix64: the next 64 random bits. */
static inline uint64_t
seed_next(struct seed_rng *r)
{
	uint64_t z = (r->s += 0x9e3779b97f4a7c15ULL);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

/* A generator for stream (kind, n) of this seed. */
static inline struct seed_rng
seed_rng_for(uint64_t kind, uint64_t n)
{
	struct seed_rng r = { seed_opt.seed * 0xd1342543de82ef95ULL ^ kind << 56 };

	seed_next(&r);
	r.s ^= n * 0x9e3779b97f4a7c15ULL;
	seed_next(&r);
	return r;
}

/* Uniform in [0, 1). */
static inline double
seed_unit(struct seed_rng *r)
{
	return (seed_next(r) >> 11) * 0x1.0p-53;
}

/* Uniform in [0, n). */
static inline uint64_t
seed_below(struct seed_rng *r, uint64_t n)
{
	return (uint64_t)(seed_unit(r) * n);
}

/* Uniform in [lo, hi]. */
static inline int64_t
seed_range(struct seed_rng *r, int64_t lo, int64_t hi)
{
	return lo + (int64_t)seed_below(r, (uint64_t)(hi - lo + 1));
}

/* An index into weights[0..n) drawn with those weights (in percent or any unit). */
static inline int
seed_pick(struct seed_rng *r, const double *weights, int n)
{
	double sum = 0, u;
	int i;

	for (i = 0; i < n; i++)
		sum += weights[i];
	u = seed_unit(r) * sum;
	for (i = 0; i < n - 1; i++) {
		if (u < weights[i])
			return i;
		u -= weights[i];
	}
	return n - 1;
}

/* A random (version 4) uuid. */
static inline void
seed_uuid(struct seed_rng *r, uint8_t u[16])
{
	uint64_t a = seed_next(r), b = seed_next(r);

	for (int i = 0; i < 8; i++) {
		u[i] = (uint8_t)(a >> (56 - 8 * i));
		u[8 + i] = (uint8_t)(b >> (56 - 8 * i));
	}
	u[6] = (u[6] & 0x0f) | 0x40;
	u[8] = (u[8] & 0x3f) | 0x80;
}

/* ------------------------------------------------------------------------ */
/* Text output: writers append at p (room reserved beforehand), return the end */

/* Append a NUL-terminated string. */
static inline char *
seed_put(char *p, const char *s)
{
	size_t n = strlen(s);

	memcpy(p, s, n);
	return p + n;
}

/* Append an unsigned decimal. */
static inline char *
seed_put_u64(char *p, uint64_t v)
{
	char tmp[24];
	int n = 0;

	do {
		tmp[n++] = (char)('0' + v % 10);
		v /= 10;
	} while (v != 0);
	while (n > 0)
		*p++ = tmp[--n];
	return p;
}

/* Append v as exactly width digits (zero-padded). */
static inline char *
seed_put_digits(char *p, uint64_t v, int width)
{
	for (int i = width - 1; i >= 0; i--) {
		p[i] = (char)('0' + v % 10);
		v /= 10;
	}
	return p + width;
}

/* Append an amount in cents as a decimal with two places. */
static inline char *
seed_put_money(char *p, int64_t cents)
{
	p = seed_put_u64(p, (uint64_t)(cents / 100));
	*p++ = '.';
	return seed_put_digits(p, (uint64_t)(cents % 100), 2);
}

/* Append a uuid in its canonical text form. */
static inline char *
seed_put_uuid(char *p, const uint8_t u[16])
{
	static const char hex[] = "0123456789abcdef";

	for (int i = 0; i < 16; i++) {
		if (i == 4 || i == 6 || i == 8 || i == 10)
			*p++ = '-';
		*p++ = hex[u[i] >> 4];
		*p++ = hex[u[i] & 15];
	}
	return p;
}

/* Append a Unix time as "YYYY-MM-DD HH:MM:SS+00" (days-from-civil inverse). */
static inline char *
seed_put_time(char *p, int64_t t)
{
	int64_t days = t / SEED_DAY, secs = t % SEED_DAY, z, era, doe, yoe, y, doy, mp, d, m;

	if (secs < 0) {
		secs += SEED_DAY;
		days--;
	}
	z = days + 719468;
	era = (z >= 0 ? z : z - 146096) / 146097;
	doe = z - era * 146097;
	yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
	y = yoe + era * 400;
	doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
	mp = (5 * doy + 2) / 153;
	d = doy - (153 * mp + 2) / 5 + 1;
	m = mp < 10 ? mp + 3 : mp - 9;
	y += m <= 2;
	p = seed_put_digits(p, (uint64_t)y, 4);
	*p++ = '-';
	p = seed_put_digits(p, (uint64_t)m, 2);
	*p++ = '-';
	p = seed_put_digits(p, (uint64_t)d, 2);
	*p++ = ' ';
	p = seed_put_digits(p, (uint64_t)(secs / 3600), 2);
	*p++ = ':';
	p = seed_put_digits(p, (uint64_t)(secs / 60 % 60), 2);
	*p++ = ':';
	p = seed_put_digits(p, (uint64_t)(secs % 60), 2);
	return seed_put(p, "+00");
}

/* Append a time, or \N when t is 0. */
static inline char *
seed_put_opt_time(char *p, int64_t t)
{
	return t != 0 ? seed_put_time(p, t) : seed_put(p, "\\N");
}

/* Make room for n more bytes. */
static void
seed_buf_reserve(struct seed_buf *b, size_t n)
{
	if (b->len + n <= b->cap)
		return;
	while (b->cap < b->len + n)
		b->cap = b->cap != 0 ? b->cap * 2 : 1 << 20;
	if ((b->data = realloc(b->data, b->cap)) == NULL)
		seed_fatal("out of memory (%zu bytes)", b->cap);
}

/* ------------------------------------------------------------------------ */
/* The fixed vocabularies */

/* Product families: names, variant lists, SKU code, price range in dollars. */
static const struct {
	const char	*code;		/* product_sku prefix */
	const char	*names[8];	/* product names */
	const char	*variants[8];	/* variant names */
	int		 lo;		/* cheapest, dollars */
	int		 hi;		/* dearest, dollars */
} seed_families[] = {
	{ "BTY", { "Matte Liquid Lipstick", "Vitamin C Glow Serum", "Hydrating Face Mist",
	    "Tinted Brow Gel", "Lash Growth Serum", "Setting Spray", "Lip Oil", "Blush Stick" },
	    { "Rose", "Nude", "Berry", "Coral", "Mauve", "Cherry", "Peach", "Cocoa" }, 8, 38 },
	{ "APP", { "Oversized Hoodie", "Ribbed Tank Top", "Cargo Pants", "Seamless Leggings",
	    "Crew Socks 5-Pack", "Linen Shirt", "Puffer Vest", "Bike Shorts" },
	    { "Black / S", "Black / M", "Black / L", "Sage / S", "Sage / M", "Cream / M",
	    "Cream / L", "Navy / XL" }, 12, 65 },
	{ "HOM", { "LED Strip Lights 16ft", "Sunset Projection Lamp", "Silk Pillowcase",
	    "Weighted Blanket", "Aroma Diffuser", "Cloud Slides", "Velvet Hangers 30-Pack",
	    "Closet Organizer" }, { "White", "Warm White", "RGB", "Grey", "Blush", "Sage",
	    "Standard", "Large" }, 9, 79 },
	{ "TEC", { "Phone Tripod with Remote", "MagSafe Card Wallet", "Wireless Earbuds",
	    "Ring Light 10in", "Mini Projector", "Car Phone Mount", "Power Bank 10000mAh",
	    "Smart Plug 2-Pack" }, { "Black", "White", "Blue", "Pink", "Silver", "Standard",
	    "Pro", "Max" }, 10, 120 },
	{ "KIT", { "Portable Blender", "Mini Waffle Maker", "Glass Tumbler with Straw",
	    "Electric Milk Frother", "Air Fryer Liners", "Silicone Lids 6-Pack",
	    "Ice Cube Trays", "Knife Sharpener" }, { "Black", "White", "Pink", "Mint",
	    "Lavender", "Clear", "20oz", "40oz" }, 7, 59 },
	{ "PET", { "Cat Tunnel", "Dog Chew Toy", "Pet Hair Remover", "Self-Cleaning Slicker Brush",
	    "Lick Mat", "Calming Dog Bed", "Cat Water Fountain", "Dog Harness" },
	    { "Small", "Medium", "Large", "Grey", "Blue", "Pink", "Green", "Brown" }, 6, 55 },
};

static const char *const seed_adjectives[] = {
	"", "Classic ", "Premium ", "Mini ", "Deluxe ", "Everyday ", "Pro ", "Eco ",
};

static const char *const seed_first_names[] = {
	"Emma", "Olivia", "Ava", "Sophia", "Isabella", "Mia", "Amelia", "Harper", "Evelyn",
	"Abigail", "Emily", "Ella", "Elizabeth", "Camila", "Luna", "Sofia", "Avery", "Mila",
	"Aria", "Scarlett", "Penelope", "Layla", "Chloe", "Victoria", "Madison", "Eleanor",
	"Grace", "Nora", "Riley", "Zoey", "Hannah", "Hazel", "Lily", "Ellie", "Violet",
	"Liam", "Noah", "Oliver", "Elijah", "James", "William", "Benjamin", "Lucas", "Henry",
	"Theodore", "Jack", "Levi", "Alexander", "Jackson", "Mateo", "Daniel", "Michael",
	"Mason", "Sebastian", "Ethan", "Logan", "Owen", "Samuel", "Jacob", "Asher", "Aiden",
	"John", "Joseph", "Wyatt", "David", "Leo", "Luke", "Julian", "Hudson", "Grayson",
	"Priya", "Wei", "Aaliyah", "Jamal", "Carlos", "Fatima", "Hiroshi", "Mei", "Andre", "Sana",
};

static const char *const seed_last_names[] = {
	"Smith", "Johnson", "Williams", "Brown", "Jones", "Garcia", "Miller", "Davis",
	"Rodriguez", "Martinez", "Hernandez", "Lopez", "Gonzalez", "Wilson", "Anderson",
	"Thomas", "Taylor", "Moore", "Jackson", "Martin", "Lee", "Perez", "Thompson", "White",
	"Harris", "Sanchez", "Clark", "Ramirez", "Lewis", "Robinson", "Walker", "Young",
	"Allen", "King", "Wright", "Scott", "Torres", "Nguyen", "Hill", "Flores", "Green",
	"Adams", "Nelson", "Baker", "Hall", "Rivera", "Campbell", "Mitchell", "Carter",
	"Roberts", "Patel", "Kim", "Chen", "Singh", "O'Brien", "Murphy", "Cooper", "Reed",
	"Bailey", "Bell", "Kelly", "Howard", "Ward", "Cox", "Diaz", "Richardson", "Wood",
	"Watson", "Brooks", "Bennett", "Gray", "James", "Reyes", "Cruz", "Hughes", "Price",
};

static const char *const seed_mail_domains[] = {
	"gmail.com", "gmail.com", "gmail.com", "yahoo.com", "outlook.com", "icloud.com",
	"hotmail.com", "aol.com", "proton.me", "comcast.net",
};

static const char *const seed_streets[] = {
	"Main", "Oak", "Pine", "Maple", "Cedar", "Elm", "Washington", "Lake", "Hill", "Sunset",
	"Park", "Walnut", "Willow", "Highland", "Jefferson", "Lincoln", "Church", "River",
	"Meadow", "Forest", "Spring", "Ridge", "Valley", "Franklin", "Madison", "Chestnut",
};

static const char *const seed_street_kinds[] = {
	"St", "Ave", "Blvd", "Rd", "Dr", "Ln", "Ct", "Way", "Pl", "Ter",
};

/* Destination cities: state, code, city, area code, ZIP base, sales tax in 1/100 %. */
static const struct {
	const char	*state;		/* district level "State" */
	const char	*code;		/* two letters */
	const char	*city;		/* district level "City" */
	unsigned	 area;		/* phone area code */
	unsigned	 zip;		/* first ZIP code */
	unsigned	 tax;		/* sales tax, basis points */
} seed_cities[] = {
	{ "California", "CA", "Los Angeles", 213, 90001, 950 },
	{ "California", "CA", "San Francisco", 415, 94102, 863 },
	{ "California", "CA", "San Diego", 619, 92101, 775 },
	{ "Texas", "TX", "Houston", 713, 77002, 825 },
	{ "Texas", "TX", "Austin", 512, 78701, 825 },
	{ "Texas", "TX", "Dallas", 214, 75201, 825 },
	{ "New York", "NY", "New York", 212, 10001, 888 },
	{ "New York", "NY", "Buffalo", 716, 14201, 875 },
	{ "Florida", "FL", "Miami", 305, 33101, 700 },
	{ "Florida", "FL", "Orlando", 407, 32801, 650 },
	{ "Illinois", "IL", "Chicago", 312, 60601, 1025 },
	{ "Pennsylvania", "PA", "Philadelphia", 215, 19102, 800 },
	{ "Ohio", "OH", "Columbus", 614, 43215, 750 },
	{ "Georgia", "GA", "Atlanta", 404, 30303, 890 },
	{ "Washington", "WA", "Seattle", 206, 98101, 1035 },
	{ "Arizona", "AZ", "Phoenix", 602, 85003, 860 },
	{ "Colorado", "CO", "Denver", 303, 80202, 881 },
	{ "Massachusetts", "MA", "Boston", 617, 2108, 625 },
	{ "Oregon", "OR", "Portland", 503, 97201, 0 },
	{ "Michigan", "MI", "Detroit", 313, 48201, 600 },
	{ "North Carolina", "NC", "Charlotte", 704, 28202, 725 },
	{ "Tennessee", "TN", "Nashville", 615, 37201, 925 },
	{ "Nevada", "NV", "Las Vegas", 702, 89101, 838 },
	{ "Minnesota", "MN", "Minneapolis", 612, 55401, 803 },
};

#define NELEM(a) (sizeof(a) / sizeof((a)[0]))

/* ------------------------------------------------------------------------ */
/* Setup: catalog, line-count distribution, creators, order slots */

/* The catalog: SEED_CATALOG_SKUS SKUs in products of 2..6 variants. */
static void
seed_make_catalog(void)
{
	struct seed_rng r = seed_rng_for(1, 0);
	int n = 0;

	for (unsigned prod = 0; n < SEED_CATALOG_SKUS; prod++) {
		unsigned fam = prod % NELEM(seed_families);
		unsigned name = prod / NELEM(seed_families) % 8;
		unsigned adj = prod / (NELEM(seed_families) * 8) % NELEM(seed_adjectives);
		int nvar = (int)seed_range(&r, 2, 6), first = (int)seed_below(&r, 8);
		int64_t base = seed_range(&r, seed_families[fam].lo * 100, seed_families[fam].hi * 100);
		uint64_t pid = (uint64_t)(1729000000000000000ULL + seed_below(&r, 999999999999999ULL));

		base = base / 100 * 100 + 99;		/* $x.99 */
		for (int v = 0; v < nvar && n < SEED_CATALOG_SKUS; v++, n++) {
			struct seed_sku *s = &seed_catalog[n];
			const char *var = seed_families[fam].variants[(first + v) % 8];

			snprintf(s->product_id, sizeof(s->product_id), "%" PRIu64, pid);
			snprintf(s->sku_id, sizeof(s->sku_id), "%" PRIu64,
			    (uint64_t)(1730000000000000000ULL + seed_below(&r, 999999999999999ULL)));
			snprintf(s->product_name, sizeof(s->product_name), "%s%s",
			    seed_adjectives[adj], seed_families[fam].names[name]);
			snprintf(s->variant_name, sizeof(s->variant_name), "%s", var);
			snprintf(s->product_sku, sizeof(s->product_sku), "%s-%04u-%c%c%u",
			    seed_families[fam].code, prod + 1, toupper((unsigned char)var[0]),
			    toupper((unsigned char)var[1]), (unsigned)v + 1);
			/* Bigger variants cost a little more. */
			s->cents = base + (v >= 3 ? 500 : 0);
		}
	}
}

/* P(lines = k), k = 1..SEED_MAX_LINES: 1 + Poisson(lambda), truncated. */
static double
seed_lines_mean(double lambda, double *p)
{
	double sum = 0, mean = 0, term = 1;

	for (int k = 0; k < SEED_MAX_LINES; k++) {
		if (k > 0)
			term *= lambda / k;
		p[k] = term;
		sum += term;
	}
	for (int k = 0; k < SEED_MAX_LINES; k++) {
		p[k] /= sum;
		mean += (k + 1) * p[k];
	}
	return mean;
}

/* Find the lambda whose truncated distribution has mean --items; keep its CDF. */
static void
seed_make_lines_cdf(void)
{
	double p[SEED_MAX_LINES], lo = 0, hi = 1000, acc = 0;

	for (int i = 0; i < 200; i++) {
		double mid = (lo + hi) / 2;

		if (seed_lines_mean(mid, p) < seed_opt.items)
			lo = mid;
		else
			hi = mid;
	}
	seed_lines_mean(lo, p);
	for (int k = 0; k < SEED_MAX_LINES; k++) {
		acc += p[k];
		seed_lines_cdf[k] = acc;
	}
	seed_lines_cdf[SEED_MAX_LINES - 1] = 1.0;
}

/* qsort: creator indexes by descending remainder (ties: lower index first). */
static const double *seed_sort_frac;

static int
seed_cmp_frac(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	if (seed_sort_frac[x] != seed_sort_frac[y])
		return seed_sort_frac[x] > seed_sort_frac[y] ? -1 : 1;
	return x < y ? -1 : x > y;
}

/*
 * The creators and how many orders each holds: the big one exactly --big-creator,
 * the others share the rest with weights 1/(k+10) (largest remainders, so the
 * counts add up exactly): with 1000 creators the biggest holds about 2% of
 * the orders, the smallest 0.02%.  Then the order slots: one creator index
 * per order, shuffled, so creators interleave over time as real traffic does.
 */
static void
seed_make_creators(void)
{
	uint64_t n = seed_opt.creators, rest = seed_opt.orders - seed_opt.big, given = 0, k, i;
	struct seed_rng r = seed_rng_for(2, 0);
	double *frac, wsum = 0;
	uint32_t *order;

	seed_ncreators = n + (seed_opt.big > 0);
	seed_creators = calloc(seed_ncreators, sizeof(*seed_creators));
	frac = calloc(n, sizeof(*frac));
	order = calloc(n, sizeof(*order));
	if (seed_creators == NULL || frac == NULL || order == NULL)
		seed_fatal("out of memory");
	for (k = 0; k < seed_ncreators; k++) {
		seed_uuid(&r, seed_creators[k].id);
		seed_uuid(&r, seed_creators[k].shop_id);
		snprintf(seed_creators[k].email, sizeof(seed_creators[k].email),
		    "seed-%" PRIu64 "-%06" PRIu64 "@orderflow.test", seed_opt.seed, k + 1);
	}
	for (k = 0; k < n; k++)
		wsum += 1.0 / ((double)k + 10);
	for (k = 0; k < n; k++) {
		double share = (double)rest * (1.0 / ((double)k + 10) / wsum);

		seed_creators[k].orders = (uint64_t)share;
		if (seed_creators[k].orders > rest - given)	/* rounding guard */
			seed_creators[k].orders = rest - given;
		frac[k] = share - (double)seed_creators[k].orders;
		given += seed_creators[k].orders;
		order[k] = (uint32_t)k;
	}
	/* The remaining orders (fewer than n) go to the largest remainders. */
	seed_sort_frac = frac;
	qsort(order, n, sizeof(*order), seed_cmp_frac);
	for (k = 0; given < rest; k = (k + 1) % n, given++)
		seed_creators[order[k]].orders++;
	free(frac);
	free(order);
	if (seed_opt.big > 0)
		seed_creators[n].orders = seed_opt.big;

	if (seed_opt.orders == 0)
		return;
	if ((seed_slots = malloc(seed_opt.orders * sizeof(*seed_slots))) == NULL)
		seed_fatal("out of memory (%" PRIu64 " order slots)", seed_opt.orders);
	for (k = 0, i = 0; k < seed_ncreators; k++)
		for (uint64_t j = 0; j < seed_creators[k].orders; j++)
			seed_slots[i++] = (uint32_t)k;
	for (i = seed_opt.orders - 1; i > 0; i--) {
		uint64_t j = seed_below(&r, i + 1);
		uint32_t t = seed_slots[i];

		seed_slots[i] = seed_slots[j];
		seed_slots[j] = t;
	}
}

/* ------------------------------------------------------------------------ */
/* Order generation */

/* order_status values, in pipeline order. */
enum seed_status {
	SEED_PENDING,		/* 'pending': unpaid or on hold */
	SEED_CONFIRMED,		/* 'confirmed': paid, awaiting shipment */
	SEED_PROCESSING,	/* 'processing': packed, awaiting collection */
	SEED_SHIPPED,		/* 'shipped': in transit */
	SEED_DELIVERED,		/* 'delivered' */
	SEED_CANCELLED,		/* 'cancelled' */
	SEED_RETURNED,		/* 'returned' */
	SEED_NSTATUS		/* number of statuses */
};

static const char *const seed_status_names[SEED_NSTATUS] = {
	"pending", "confirmed", "processing", "shipped", "delivered", "cancelled", "returned",
};

/* Status weights (percent) by the order's age. */
static const struct {
	double		 max_days;		/* applies to orders younger than this */
	double		 w[SEED_NSTATUS];	/* weights, seed_status order */
} seed_status_mix[] = {
	{ 0.5, { 45, 30, 15, 0, 0, 10, 0 } },
	{ 2, { 5, 15, 25, 48, 0, 7, 0 } },
	{ 7, { 0, 0, 4, 45, 44, 6, 1 } },
	{ 1e9, { 0.5, 1, 1, 2, 84.5, 6, 5 } },
};

/* fulfillment_status of the lines of an order in each status. */
static const char *const seed_fulfillment[SEED_NSTATUS] = {
	"pending", "reserved", "packed", "shipped", "delivered", "cancelled", "delivered",
};

/* Shipping options: name, weight, fee in cents, free from this subtotal (or -1). */
static const struct {
	const char	*name;		/* shipping_method */
	double		 weight;	/* how often */
	int64_t		 fee;		/* cents */
	int64_t		 free_from;	/* subtotal in cents for free shipping, -1 never */
} seed_shipping[] = {
	{ "Standard Shipping", 70, 499, 3500 },
	{ "Economy Shipping", 15, 299, 2000 },
	{ "Express Shipping", 10, 999, -1 },
	{ "Shipped by Seller", 5, 599, 5000 },
};

/* Scramble n into 13 digits, one-to-one below 10^13 (the multiplier is prime to 10). */
static inline uint64_t
seed_scramble13(uint64_t n, uint64_t offset)
{
	return (uint64_t)(((unsigned __int128)n * 98765432117ULL + offset) % 10000000000000ULL);
}

/* t + delay, but never later than most of the way to now (times stay in the past). */
static inline int64_t
seed_after(int64_t t, int64_t delay)
{
	int64_t room = seed_now - 1 - t;

	if (room <= 0)
		return t;
	return t + (delay < room * 9 / 10 ? delay : room * 9 / 10);
}

/* Append order idx's orders row, its lines and its history row to job's buffers. */
static void
seed_make_order(struct seed_job *job, uint64_t idx)
{
	struct seed_rng r = seed_rng_for(3, idx);
	const struct seed_creator *cr = &seed_creators[seed_slots[idx]];
	uint8_t id[16], line_id[16], hist_id[16];
	int nlines, skus[SEED_MAX_LINES], qty[SEED_MAX_LINES], ship, city, st, prev;
	int64_t span = (int64_t)seed_opt.days * SEED_DAY, t0, paid = 0, shipped = 0;
	int64_t delivered = 0, returned = 0, cancelled = 0, updated, created, subtotal = 0, tax, fee;
	double age, u;
	const char *first, *last, *tts, *wf, *pay, *reason;
	bool on_hold = false, buyer_cancel = false, has_email;
	uint64_t tid = 0;
	char *p, *q, addr1[64];
	unsigned zip;

	seed_uuid(&r, id);
	seed_uuid(&r, hist_id);

	/* When: oldest orders first, spread evenly over --days. */
	t0 = seed_now - span + (int64_t)(((double)idx + seed_unit(&r)) / (double)seed_opt.orders *
	    (double)(span - 60));
	age = (double)(seed_now - t0) / SEED_DAY;
	for (st = 0; age >= seed_status_mix[st].max_days; st++)
		;
	st = seed_pick(&r, seed_status_mix[st].w, SEED_NSTATUS);

	/* The lines: distinct SKUs, popular ones first. */
	u = seed_unit(&r);
	for (nlines = 1; nlines < SEED_MAX_LINES && u >= seed_lines_cdf[nlines - 1]; nlines++)
		;
	for (int i = 0; i < nlines; i++) {
		int s, j;

		do {
			double v = seed_unit(&r);

			s = (int)(v * v * SEED_CATALOG_SKUS);
			for (j = 0; j < i && skus[j] != s; j++)
				;
		} while (j < i);
		skus[i] = s;
		u = seed_unit(&r);
		qty[i] = u < 0.75 ? 1 : u < 0.93 ? 2 : u < 0.98 ? 3 : (int)seed_range(&r, 4, 5);
		subtotal += qty[i] * seed_catalog[s].cents;
	}
	city = (int)seed_below(&r, NELEM(seed_cities));
	tax = (subtotal * seed_cities[city].tax + 5000) / 10000;
	ship = seed_pick(&r, (const double[]){ seed_shipping[0].weight, seed_shipping[1].weight,
	    seed_shipping[2].weight, seed_shipping[3].weight }, NELEM(seed_shipping));
	fee = seed_shipping[ship].free_from >= 0 && subtotal >= seed_shipping[ship].free_from ? 0 :
	    seed_shipping[ship].fee;

	/* The timeline, each step after the previous one and before now. */
	if (st != SEED_PENDING && !(st == SEED_CANCELLED && seed_unit(&r) < 0.3))
		paid = seed_after(t0, seed_range(&r, 20, 900));
	if (st == SEED_SHIPPED || st == SEED_DELIVERED || st == SEED_RETURNED)
		shipped = seed_after(paid, seed_range(&r, 6 * 3600, 3 * SEED_DAY));
	if (st == SEED_DELIVERED || st == SEED_RETURNED)
		delivered = seed_after(shipped, seed_range(&r, 2 * SEED_DAY, 6 * SEED_DAY));
	if (st == SEED_RETURNED)
		returned = seed_after(delivered, seed_range(&r, 2 * SEED_DAY, 20 * SEED_DAY));
	if (st == SEED_CANCELLED) {
		cancelled = seed_after(paid != 0 ? paid : t0, seed_range(&r, 600, 2 * SEED_DAY));
		buyer_cancel = seed_unit(&r) < 0.4;
	}
	updated = returned ? returned : cancelled ? cancelled : delivered ? delivered :
	    shipped ? shipped : paid ? seed_after(paid, seed_range(&r, 60, 12 * 3600)) : t0;

	switch (st) {
	case SEED_PENDING:
		on_hold = seed_unit(&r) < 0.3;
		tts = on_hold ? "ON_HOLD" : "UNPAID";
		wf = "new";
		pay = "pending";
		prev = -1;
		reason = on_hold ? "TikTok status ON_HOLD" : "TikTok status UNPAID";
		break;
	case SEED_CONFIRMED:
		tts = "AWAITING_SHIPMENT";
		wf = "validated";
		pay = "paid";
		prev = SEED_PENDING;
		reason = "TikTok status AWAITING_SHIPMENT";
		buyer_cancel = seed_unit(&r) < 0.02;
		break;
	case SEED_PROCESSING:
		tts = "AWAITING_COLLECTION";
		wf = seed_unit(&r) < 0.5 ? "inventory_reserved" : "ready_to_ship";
		pay = "paid";
		prev = SEED_CONFIRMED;
		reason = "TikTok status AWAITING_COLLECTION";
		break;
	case SEED_SHIPPED:
		tts = "IN_TRANSIT";
		wf = "shipped";
		pay = "paid";
		prev = SEED_PROCESSING;
		reason = "TikTok status IN_TRANSIT";
		break;
	case SEED_DELIVERED:
		tts = seed_now - delivered > 7 * SEED_DAY ? "COMPLETED" : "DELIVERED";
		wf = "completed";
		pay = "paid";
		prev = SEED_SHIPPED;
		reason = tts[0] == 'C' ? "TikTok status COMPLETED" : "TikTok status DELIVERED";
		break;
	case SEED_CANCELLED:
		tts = "CANCELLED";
		wf = "failed";
		pay = paid != 0 ? "refunded" : "failed";
		prev = paid != 0 ? SEED_CONFIRMED : SEED_PENDING;
		reason = buyer_cancel ? "cancelled at the buyer's request" : "TikTok status CANCELLED";
		break;
	default:
		tts = "COMPLETED";
		wf = "completed";
		pay = seed_unit(&r) < 0.8 ? "refunded" : "partially_refunded";
		prev = SEED_DELIVERED;
		reason = "return received";
		break;
	}

	/* The buyer. */
	first = seed_first_names[seed_below(&r, NELEM(seed_first_names))];
	last = seed_last_names[seed_below(&r, NELEM(seed_last_names))];
	has_email = seed_unit(&r) < 0.95;
	zip = seed_cities[city].zip + (unsigned)seed_below(&r, 90);
	snprintf(addr1, sizeof(addr1), "%u %s %s", (unsigned)seed_range(&r, 1, 9899),
	    seed_streets[seed_below(&r, NELEM(seed_streets))],
	    seed_street_kinds[seed_below(&r, NELEM(seed_street_kinds))]);

	/* orders row */
	seed_buf_reserve(&job->orders, SEED_ORDER_ROOM);
	p = job->orders.data + job->orders.len;
	p = seed_put_uuid(p, id);
	*p++ = '\t';
	p = seed_put_uuid(p, cr->id);
	*p++ = '\t';
	p = seed_put_uuid(p, cr->shop_id);
	*p++ = '\t';
	/* TikTok order ids grow with time, as TikTok's do: 57, the tag, 12 digits. */
	tid = idx * 1000 + seed_below(&r, 1000);
	p = seed_put(p, "57");
	p = seed_put_digits(p, seed_tag, 4);
	p = seed_put_digits(p, tid, 12);
	*p++ = '\t';
	p = seed_put(p, "SO");
	p = seed_put_digits(p, seed_tag, 4);
	*p++ = '-';
	p = seed_put_digits(p, idx + 1, 9);
	*p++ = '\t';
	p = seed_put(p, seed_status_names[st]);
	*p++ = '\t';
	p = seed_put(p, wf);
	*p++ = '\t';
	p = seed_put(p, tts);
	*p++ = '\t';
	p = seed_put_time(p, updated);		/* tiktok_update_time */
	*p++ = '\t';
	p = seed_put_money(p, subtotal);
	*p++ = '\t';
	p = seed_put_money(p, tax);
	*p++ = '\t';
	p = seed_put_money(p, subtotal + tax + fee);
	p = seed_put(p, "\tUSD\t");
	p = seed_put(p, pay);
	*p++ = '\t';
	q = p;					/* customer_name */
	p = seed_put(p, first);
	*p++ = ' ';
	p = seed_put(p, last);
	*p++ = '\t';
	if (has_email) {
		for (const char *s = first; *s != '\0'; s++)
			*p++ = (char)tolower((unsigned char)*s);
		*p++ = seed_unit(&r) < 0.5 ? '.' : '_';
		for (const char *s = last; *s != '\0'; s++)
			if (*s != '\'')
				*p++ = (char)tolower((unsigned char)*s);
		if (seed_unit(&r) < 0.7)
			p = seed_put_u64(p, seed_range(&r, 1, 2005));
		*p++ = '@';
		p = seed_put(p, seed_mail_domains[seed_below(&r, NELEM(seed_mail_domains))]);
	} else {
		p = seed_put(p, "\\N");
	}
	p = seed_put(p, "\t+1");
	p = seed_put_digits(p, seed_cities[city].area, 3);
	p = seed_put_digits(p, seed_range(&r, 2000000, 9999999), 7);
	*p++ = '\t';
	/* shipping_address, in the shape src/order/apply.c stores */
	p = seed_put(p, "{\"name\": \"");
	memcpy(p, q, strlen(first) + 1 + strlen(last));
	p += strlen(first) + 1 + strlen(last);
	p = seed_put(p, "\", \"region_code\": \"US\", \"postal_code\": \"");
	p = seed_put_digits(p, zip, 5);
	p = seed_put(p, "\", \"full_address\": \"");
	p = seed_put(p, addr1);
	p = seed_put(p, ", ");
	p = seed_put(p, seed_cities[city].city);
	p = seed_put(p, ", ");
	p = seed_put(p, seed_cities[city].code);
	*p++ = ' ';
	p = seed_put_digits(p, zip, 5);
	p = seed_put(p, ", United States\", \"address_line1\": \"");
	p = seed_put(p, addr1);
	p = seed_put(p, "\", \"district_info\": [{\"name\": \"United States\", \"level\": \"Country\"}, "
	    "{\"name\": \"");
	p = seed_put(p, seed_cities[city].state);
	p = seed_put(p, "\", \"level\": \"State\"}, {\"name\": \"");
	p = seed_put(p, seed_cities[city].city);
	p = seed_put(p, "\", \"level\": \"City\"}]}\t");
	p = seed_put(p, seed_shipping[ship].name);
	*p++ = '\t';
	p = seed_put_money(p, fee);
	*p++ = '\t';
	p = seed_put_time(p, t0);		/* order_date */
	*p++ = '\t';
	p = seed_put_time(p, t0 + 2 * SEED_DAY);	/* expected_ship_date */
	*p++ = '\t';
	p = seed_put_opt_time(p, shipped);
	*p++ = '\t';
	p = seed_put_opt_time(p, delivered);
	*p++ = '\t';
	/* SLAs: set once paid */
	p = seed_put_opt_time(p, paid ? t0 + 2 * SEED_DAY : 0);	/* rts_sla_time */
	*p++ = '\t';
	p = seed_put_opt_time(p, paid ? t0 + 3 * SEED_DAY : 0);	/* shipping_due_time */
	*p++ = '\t';
	p = seed_put_opt_time(p, paid ? t0 + 4 * SEED_DAY : 0);	/* collection_due_time */
	*p++ = '\t';
	p = seed_put_opt_time(p, paid ? t0 + 10 * SEED_DAY : 0);	/* delivery_sla_time */
	*p++ = '\t';
	p = seed_put_opt_time(p, buyer_cancel && st != SEED_CANCELLED ? updated + SEED_DAY : 0);
	*p++ = '\t';
	*p++ = on_hold ? 't' : 'f';
	*p++ = '\t';
	*p++ = buyer_cancel ? 't' : 'f';
	*p++ = '\t';
	/* priority_level and tags */
	u = seed_unit(&r);
	if (subtotal >= 15000) {
		p = seed_put(p, "3\t{high_value}");
	} else if (u < 0.03) {
		p = seed_put(p, "2\t{vip}");
	} else if (u < 0.08) {
		p = seed_put(p, "1\t{gift}");
	} else {
		p = seed_put(p, "1\t{}");
	}
	*p++ = '\t';
	p = seed_put_time(p, updated);		/* last_tiktok_sync */
	p = seed_put(p, "\tsynced\t");
	created = t0 + 1 + (int64_t)seed_below(&r, 30);
	p = seed_put_time(p, created);		/* created_at */
	*p++ = '\t';
	p = seed_put_time(p, updated > t0 + 30 ? updated : t0 + 30);	/* updated_at */
	*p++ = '\n';
	job->orders.len = (size_t)(p - job->orders.data);

	/* order_items rows */
	seed_buf_reserve(&job->lines, (size_t)nlines * SEED_ITEM_ROOM);
	p = job->lines.data + job->lines.len;
	for (int i = 0; i < nlines; i++) {
		const struct seed_sku *s = &seed_catalog[skus[i]];
		bool out = st == SEED_SHIPPED || st == SEED_DELIVERED || st == SEED_RETURNED;

		seed_uuid(&r, line_id);
		p = seed_put_uuid(p, line_id);
		*p++ = '\t';
		p = seed_put_uuid(p, id);
		*p++ = '\t';
		p = seed_put_uuid(p, cr->id);
		*p++ = '\t';
		p = seed_put(p, s->product_id);
		*p++ = '\t';
		p = seed_put(p, s->sku_id);
		*p++ = '\t';
		p = seed_put(p, s->product_sku);	/* seller_sku */
		*p++ = '\t';
		p = seed_put(p, s->product_name);
		*p++ = '\t';
		p = seed_put(p, s->product_sku);
		*p++ = '\t';
		p = seed_put(p, s->variant_name);
		*p++ = '\t';
		p = seed_put_u64(p, (uint64_t)qty[i]);
		*p++ = '\t';
		p = seed_put_money(p, s->cents);
		*p++ = '\t';
		p = seed_put_money(p, qty[i] * s->cents);
		*p++ = '\t';
		p = seed_put(p, seed_fulfillment[st]);
		*p++ = '\t';
		p = seed_put_u64(p, out ? (uint64_t)qty[i] : 0);
		p = seed_put(p, "\t{");
		for (int k = 0; k < qty[i]; k++) {	/* one TikTok line id per unit */
			if (k > 0)
				*p++ = ',';
			p = seed_put(p, "57");
			p = seed_put_digits(p, seed_tag, 4);
			p = seed_put_digits(p, seed_scramble13(tid * 32 + (uint64_t)(i * 8 + k),
			    seed_offset) % 1000000000000ULL, 12);
		}
		p = seed_put(p, "}\t");
		p = seed_put_time(p, created);
		*p++ = '\t';
		p = seed_put_time(p, updated > t0 + 30 ? updated : t0 + 30);
		*p++ = '\n';
	}
	job->lines.len = (size_t)(p - job->lines.data);
	job->items += (uint64_t)nlines;

	/* order_status_history row: the transition into the current status */
	seed_buf_reserve(&job->history, SEED_ORDER_ROOM);
	p = job->history.data + job->history.len;
	p = seed_put_uuid(p, hist_id);
	*p++ = '\t';
	p = seed_put_uuid(p, id);
	*p++ = '\t';
	p = seed_put_uuid(p, cr->id);
	*p++ = '\t';
	p = seed_put(p, prev >= 0 ? seed_status_names[prev] : "\\N");
	*p++ = '\t';
	p = seed_put(p, seed_status_names[st]);
	*p++ = '\t';
	p = seed_put(p, reason);
	p = seed_put(p, "\ttiktok_shop\t{\"seeded\": true, \"tiktok_status\": \"");
	p = seed_put(p, tts);
	p = seed_put(p, "\"}\t");
	p = seed_put_time(p, updated);
	*p++ = '\n';
	job->history.len = (size_t)(p - job->history.data);
}

/* ------------------------------------------------------------------------ */
/* PostgreSQL */

/* Record the first error of a job (or of the main connection when job is NULL). */
static void __attribute__((format(printf, 2, 3)))
seed_job_error(struct seed_job *job, const char *fmt, ...)
{
	char buf[512];
	va_list ap;
	size_t n;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	n = strlen(buf);
	while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == ' '))
		buf[--n] = '\0';
	if (job == NULL)
		seed_fatal("%s", buf);
	if (job->ok) {
		job->ok = false;
		snprintf(job->err, sizeof(job->err), "%s", buf);
	}
	atomic_store(&seed_abort, true);
}

/* Run one command; false (and the error recorded) unless it succeeded. */
static bool
seed_exec(PGconn *conn, struct seed_job *job, const char *sql)
{
	PGresult *res = PQexec(conn, sql);
	ExecStatusType st = PQresultStatus(res);
	bool ok = st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK;

	if (!ok)
		seed_job_error(job, "%s: %s", sql, PQresultErrorMessage(res)[0] != '\0' ?
		    PQresultErrorMessage(res) : PQerrorMessage(conn));
	PQclear(res);
	return ok;
}

/*
 * Fold the deltas the load appended to order_stats_delta (sql/006) into
 * order_stats, so the first summaries do not read them; stops when a
 * running orderflowd holds the roll-up (it folds them itself).
 */
static void
seed_fold_stats(PGconn *conn)
{
	long long n;

	seed_progress("folding the summary counters");
	do {
		PGresult *res = PQexec(conn, "SELECT order_stats_rollup(100000)");

		if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
			fprintf(stderr, "seed_orders: warning: order_stats_rollup: %s",
			    PQresultErrorMessage(res));
			PQclear(res);
			return;
		}
		n = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
		PQclear(res);
	} while (n == 100000);
}

/* COPY the rows in b (text format) with the statement sql; empties b. */
static bool
seed_copy(PGconn *conn, struct seed_job *job, const char *sql, struct seed_buf *b)
{
	PGresult *res = PQexec(conn, sql);
	bool ok = true;

	if (PQresultStatus(res) != PGRES_COPY_IN) {
		seed_job_error(job, "%.40s...: %s", sql, PQerrorMessage(conn));
		PQclear(res);
		return false;
	}
	PQclear(res);
	for (size_t off = 0; off < b->len && ok; off += SEED_SEND_BYTES) {
		size_t n = b->len - off < SEED_SEND_BYTES ? b->len - off : SEED_SEND_BYTES;

		if (PQputCopyData(conn, b->data + off, (int)n) != 1) {
			seed_job_error(job, "sending COPY data: %s", PQerrorMessage(conn));
			ok = false;
		}
	}
	if (PQputCopyEnd(conn, ok ? NULL : "seed_orders gave up") != 1 && ok) {
		seed_job_error(job, "ending COPY: %s", PQerrorMessage(conn));
		ok = false;
	}
	while ((res = PQgetResult(conn)) != NULL) {
		if (PQresultStatus(res) != PGRES_COMMAND_OK && ok) {
			seed_job_error(job, "%.40s...: %s", sql, PQresultErrorMessage(res));
			ok = false;
		}
		PQclear(res);
	}
	b->len = 0;
	return ok;
}

/* A new connection, or exit 1. */
static PGconn *
seed_connect(void)
{
	PGconn *conn = PQconnectdb(seed_opt.conninfo);

	if (PQstatus(conn) != CONNECTION_OK)
		seed_fatal("cannot connect: %s", PQerrorMessage(conn));
	return conn;
}

static const char seed_copy_orders[] =
    "COPY orders (id, user_id, shop_id, tiktok_order_id, order_number, order_status,"
    " workflow_status, tiktok_status, tiktok_update_time, subtotal, tax, total_amount,"
    " currency, payment_status, customer_name, customer_email, customer_phone,"
    " shipping_address, shipping_method, shipping_cost, order_date, expected_ship_date,"
    " shipped_date, delivered_date, rts_sla_time, shipping_due_time, collection_due_time,"
    " delivery_sla_time, cancel_order_sla_time, is_on_hold, buyer_request_cancel,"
    " priority_level, tags, last_tiktok_sync, sync_status, created_at, updated_at)"
    " FROM STDIN";

static const char seed_copy_items[] =
    "COPY order_items (id, order_id, user_id, tiktok_product_id, sku_id, seller_sku,"
    " product_name, product_sku, variant_name, quantity, unit_price, total_price,"
    " fulfillment_status, shipped_quantity, tiktok_line_item_ids, created_at, updated_at)"
    " FROM STDIN";

static const char seed_copy_history[] =
    "COPY order_status_history (id, order_id, user_id, previous_status, new_status,"
    " status_reason, change_source, metadata, created_at) FROM STDIN";

/* Thread body: copy orders [lo, hi) in chunks inside the job's transaction. */
static void *
seed_job_run(void *arg)
{
	struct seed_job *job = arg;

	if (!seed_exec(job->conn, job, "BEGIN"))
		return NULL;
	for (uint64_t lo = job->lo; lo < job->hi; lo += SEED_CHUNK) {
		uint64_t hi = lo + SEED_CHUNK < job->hi ? lo + SEED_CHUNK : job->hi;

		if (atomic_load(&seed_abort))
			return NULL;
		for (uint64_t i = lo; i < hi; i++)
			seed_make_order(job, i);
		if (!seed_copy(job->conn, job, seed_copy_orders, &job->orders) ||
		    !seed_copy(job->conn, job, seed_copy_items, &job->lines) ||
		    !seed_copy(job->conn, job, seed_copy_history, &job->history))
			return NULL;
		atomic_fetch_add(&seed_done, hi - lo);
	}
	return NULL;
}

/* Copy the creators and their shops on conn, in one committed transaction. */
static void
seed_copy_creators(PGconn *conn)
{
	struct seed_buf b = { 0 };
	struct seed_rng r = seed_rng_for(4, 0);
	char *p;

	for (uint64_t k = 0; k < seed_ncreators; k++) {
		const struct seed_creator *c = &seed_creators[k];

		seed_buf_reserve(&b, 512);
		p = b.data + b.len;
		p = seed_put_uuid(p, c->id);
		*p++ = '\t';
		p = seed_put(p, c->email);
		*p++ = '\t';
		p = seed_put(p, k == seed_opt.creators ? "Seed Big Creator" : "Seed Creator ");
		if (k < seed_opt.creators)
			p = seed_put_digits(p, k + 1, 6);
		*p++ = '\t';
		p = seed_put_time(p, seed_now - (int64_t)seed_opt.days * SEED_DAY - SEED_DAY);
		*p++ = '\n';
		b.len = (size_t)(p - b.data);
	}
	if (!seed_exec(conn, NULL, "BEGIN") ||
	    !seed_copy(conn, NULL, "COPY creators (id, email, display_name, created_at) FROM STDIN", &b))
		exit(1);
	for (uint64_t k = 0; k < seed_ncreators; k++) {
		const struct seed_creator *c = &seed_creators[k];

		seed_buf_reserve(&b, 512);
		p = b.data + b.len;
		p = seed_put_uuid(p, c->shop_id);
		*p++ = '\t';
		p = seed_put_uuid(p, c->id);
		*p++ = '\t';
		p = seed_put(p, "7");			/* tiktok_shop_id */
		p = seed_put_digits(p, seed_tag, 4);
		p = seed_put_digits(p, seed_scramble13(k, seed_offset) % 100000000ULL, 8);
		p = seed_put(p, "\tROW_");		/* shop_cipher */
		for (int i = 0; i < 16; i++)
			*p++ = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
			    [seed_below(&r, 62)];
		p = seed_put(p, "\tSeed Shop ");
		p = seed_put_digits(p, k + 1, 6);
		p = seed_put(p, "\tseed");		/* app_key */
		p = seed_put_digits(p, seed_tag, 4);
		for (int i = 0; i < 8; i++)
			*p++ = "0123456789abcdef"[seed_below(&r, 16)];
		*p++ = '\t';				/* app_secret */
		for (int i = 0; i < 40; i++)
			*p++ = "0123456789abcdef"[seed_below(&r, 16)];
		p = seed_put(p, "\tactive\t");
		p = seed_put_time(p, seed_now - (int64_t)seed_opt.days * SEED_DAY - SEED_DAY);
		*p++ = '\n';
		b.len = (size_t)(p - b.data);
	}
	if (!seed_copy(conn, NULL, "COPY shops (id, creator_id, tiktok_shop_id, shop_cipher,"
	    " shop_name, app_key, app_secret, status, created_at) FROM STDIN", &b) ||
	    !seed_exec(conn, NULL, "COMMIT"))
		exit(1);
	free(b.data);
}

/* Delete the creators this run added (cascades to shops and orders). */
static void
seed_undo_creators(PGconn *conn)
{
	struct seed_buf b = { 0 };
	PGresult *res;
	char *p;

	seed_buf_reserve(&b, 64 + seed_ncreators * 40);
	p = seed_put(b.data, "DELETE FROM creators WHERE id = ANY ('{");
	for (uint64_t k = 0; k < seed_ncreators; k++) {
		if (k > 0)
			*p++ = ',';
		p = seed_put_uuid(p, seed_creators[k].id);
	}
	p = seed_put(p, "}'::uuid[])");
	*p = '\0';
	res = PQexec(conn, b.data);
	if (PQresultStatus(res) != PGRES_COMMAND_OK)
		fprintf(stderr, "seed_orders: removing the seeded creators failed: %s",
		    PQresultErrorMessage(res));
	PQclear(res);
	free(b.data);
}

/* Write --creators-out: "creator_id<TAB>email<TAB>orders" per creator. */
static void
seed_write_creators(FILE *fp)
{
	char id[40];

	for (uint64_t k = 0; k < seed_ncreators; k++) {
		*seed_put_uuid(id, seed_creators[k].id) = '\0';
		fprintf(fp, "%s\t%s\t%" PRIu64 "\n", id, seed_creators[k].email,
		    seed_creators[k].orders);
	}
	if (fflush(fp) != 0 || ferror(fp) || fclose(fp) != 0)
		seed_fatal("%s: %s", seed_opt.creators_out, strerror(errno));
	seed_out_written = true;
}

/* The secondary indexes dropped for the load: name and definition. */
static char	**seed_index_names;
static char	**seed_index_defs;
static size_t	  seed_nindexes;
static atomic_size_t seed_next_index;	/* next index to build */

/*
 * Drop the indexes of orders, order_items and order_status_history that back
 * no constraint (the dashboard's search and sort indexes), keeping their
 * definitions: maintaining them row by row costs more than the rest of the
 * load, building them afterwards takes a few seconds.  Skipped with
 * --keep-indexes and when the tables already hold more orders than we add.
 */
static void
seed_drop_indexes(PGconn *conn)
{
	struct seed_buf b = { 0 };
	PGresult *res;
	double existing;
	char *p;

	res = PQexec(conn, "SELECT reltuples FROM pg_class WHERE oid = 'orders'::regclass");
	if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1)
		seed_fatal("reading the size of orders: %s", PQresultErrorMessage(res));
	existing = strtod(PQgetvalue(res, 0, 0), NULL);
	PQclear(res);
	if (existing > (double)seed_opt.orders && seed_opt.indexes == 0) {
		seed_progress("orders holds about %.0f rows already: keeping its indexes", existing);
		return;
	}
	res = PQexec(conn, "SELECT i.indexrelid::regclass::text, pg_get_indexdef(i.indexrelid)"
	    " FROM pg_index i WHERE i.indrelid IN ('orders'::regclass, 'order_items'::regclass,"
	    " 'order_status_history'::regclass) AND i.indisvalid AND NOT EXISTS (SELECT 1"
	    " FROM pg_constraint c WHERE c.conindid = i.indexrelid) ORDER BY 1");
	if (PQresultStatus(res) != PGRES_TUPLES_OK)
		seed_fatal("listing the indexes: %s", PQresultErrorMessage(res));
	seed_nindexes = (size_t)PQntuples(res);
	seed_index_names = calloc(seed_nindexes + 1, sizeof(char *));
	seed_index_defs = calloc(seed_nindexes + 1, sizeof(char *));
	if (seed_index_names == NULL || seed_index_defs == NULL)
		seed_fatal("out of memory");
	seed_buf_reserve(&b, 64);
	p = seed_put(b.data, "DROP INDEX ");
	b.len = (size_t)(p - b.data);
	for (size_t k = 0; k < seed_nindexes; k++) {
		if ((seed_index_names[k] = strdup(PQgetvalue(res, (int)k, 0))) == NULL ||
		    (seed_index_defs[k] = strdup(PQgetvalue(res, (int)k, 1))) == NULL)
			seed_fatal("out of memory");
		seed_buf_reserve(&b, strlen(seed_index_names[k]) + 4);
		p = b.data + b.len;
		if (k > 0)
			p = seed_put(p, ", ");
		p = seed_put(p, seed_index_names[k]);
		*p = '\0';
		b.len = (size_t)(p - b.data);
	}
	PQclear(res);
	if (seed_nindexes > 0) {
		seed_progress("dropping %zu secondary indexes for the load (rebuilt at the end;"
		    " --keep-indexes keeps them)", seed_nindexes);
		if (!seed_exec(conn, NULL, b.data))
			exit(1);
	}
	free(b.data);
}

/* Thread body: build dropped indexes until none is left. */
static void *
seed_index_run(void *arg)
{
	struct seed_job *job = arg;
	size_t k;

	if (!seed_exec(job->conn, job, "SET maintenance_work_mem = '256MB'") ||
	    !seed_exec(job->conn, job, "SET max_parallel_maintenance_workers = 0"))
		return NULL;
	while ((k = atomic_fetch_add(&seed_next_index, 1)) < seed_nindexes) {
		if (!seed_exec(job->conn, job, seed_index_defs[k]))
			return NULL;
		free(seed_index_defs[k]);
		seed_index_defs[k] = NULL;	/* built */
	}
	return NULL;
}

/* Rebuild the dropped indexes on the job connections; false if any failed. */
static bool
seed_build_indexes(struct seed_job *jobs, uint64_t njobs)
{
	double t = seed_clock();
	bool ok = true;

	if (seed_nindexes == 0)
		return true;
	seed_progress("building %zu indexes", seed_nindexes);
	for (uint64_t j = 0; j < njobs; j++) {
		jobs[j].ok = true;
		jobs[j].threaded = pthread_create(&jobs[j].thread, NULL, seed_index_run,
		    &jobs[j]) == 0;
		if (!jobs[j].threaded)
			seed_index_run(&jobs[j]);	/* no thread: build here */
	}
	for (uint64_t j = 0; j < njobs; j++) {
		if (jobs[j].threaded)
			pthread_join(jobs[j].thread, NULL);
		if (!jobs[j].ok) {
			fprintf(stderr, "seed_orders: building indexes: %s\n", jobs[j].err);
			ok = false;
		}
	}
	for (size_t k = 0; k < seed_nindexes; k++) {
		if (seed_index_defs[k] != NULL) {
			fprintf(stderr, "seed_orders: index %s is missing; create it with: %s;\n",
			    seed_index_names[k], seed_index_defs[k]);
			ok = false;
		}
		free(seed_index_defs[k]);
		free(seed_index_names[k]);
	}
	if (ok)
		seed_progress("indexes built in %.1f s", seed_clock() - t);
	return ok;
}

/* atexit: a failed run leaves no --creators-out file behind. */
static void
seed_remove_out(void)
{
	if (seed_opt.creators_out != NULL && !seed_out_written)
		unlink(seed_opt.creators_out);
}

/* SIGINT, SIGTERM: stop after the current chunk, undo, rebuild the indexes. */
static void
seed_on_signal(int sig)
{
	(void)sig;
	atomic_store(&seed_abort, true);
}

int
main(int argc, char **argv)
{
	struct sigaction sa;
	struct seed_job *jobs;
	PGconn *conn;
	FILE *out = NULL;
	double t_start, t_last, elapsed;
	uint64_t njobs, items = 0, last_done = 0;
	bool ok = true;

	seed_parse_args(argc, argv);
	if (seed_opt.creators_out != NULL && (out = fopen(seed_opt.creators_out, "w")) == NULL)
		seed_fatal("%s: %s", seed_opt.creators_out, strerror(errno));
	atexit(seed_remove_out);
	t_start = seed_clock();
	seed_now = (int64_t)time(NULL);
	seed_tag = (unsigned)(seed_opt.seed % 10000);
	seed_offset = seed_next(&(struct seed_rng){ seed_opt.seed }) % 10000000000000ULL;
	seed_make_catalog();
	seed_make_lines_cdf();
	seed_make_creators();

	conn = seed_connect();
	seed_exec(conn, NULL, "SET client_min_messages = warning");
	seed_progress("copying %" PRIu64 " creators and shops", seed_ncreators);
	seed_copy_creators(conn);

	/* One job per range of orders, each on its own connection. */
	njobs = seed_opt.jobs;
	if (njobs > seed_opt.orders / SEED_MIN_PER_JOB + 1)
		njobs = seed_opt.orders / SEED_MIN_PER_JOB + 1;
	if ((jobs = calloc(njobs, sizeof(*jobs))) == NULL)
		seed_fatal("out of memory");
	for (uint64_t j = 0; j < njobs; j++) {
		PGresult *res;

		jobs[j].no = (int)j;
		jobs[j].ok = true;
		jobs[j].lo = seed_opt.orders * j / njobs;
		jobs[j].hi = seed_opt.orders * (j + 1) / njobs;
		jobs[j].conn = PQconnectdb(seed_opt.conninfo);
		if (PQstatus(jobs[j].conn) != CONNECTION_OK) {
			fprintf(stderr, "seed_orders: cannot connect: %s", PQerrorMessage(jobs[j].conn));
			seed_undo_creators(conn);
			exit(1);
		}
		/*
		 * Compressed full-page images halve the WAL of the load; only a
		 * superuser may set it, and nothing depends on it.
		 */
		res = PQexec(jobs[j].conn, "SET wal_compression = lz4");
		if (PQresultStatus(res) != PGRES_COMMAND_OK) {
			PQclear(res);
			res = PQexec(jobs[j].conn, "SET wal_compression = on");
		}
		PQclear(res);
	}
	if (seed_opt.indexes > 0 || (seed_opt.indexes == 0 &&
	    seed_opt.orders >= SEED_DROP_INDEXES_FROM))
		seed_drop_indexes(conn);
	/* From here on, a failure must still rebuild the indexes. */

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = seed_on_signal;
	sa.sa_flags = SA_RESETHAND;	/* a second signal kills */
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);

	seed_progress("copying %" PRIu64 " orders on %" PRIu64 " connection%s", seed_opt.orders,
	    njobs, njobs == 1 ? "" : "s");
	for (uint64_t j = 0; j < njobs; j++) {
		int e = pthread_create(&jobs[j].thread, NULL, seed_job_run, &jobs[j]);

		if (e != 0)
			seed_fatal("pthread_create: %s", strerror(e));
	}

	/* Progress every two seconds until every job is done. */
	t_last = seed_clock();
	for (;;) {
		uint64_t done = atomic_load(&seed_done);
		struct timespec ts = { 0, 100 * 1000 * 1000 };
		double now = seed_clock();

		if (done >= seed_opt.orders || atomic_load(&seed_abort))
			break;
		if (now - t_last >= 2.0) {
			seed_progress("%" PRIu64 "/%" PRIu64 " orders (%.0f%%), %.0f orders/s",
			    done, seed_opt.orders, 100.0 * done / seed_opt.orders,
			    (done - last_done) / (now - t_last));
			t_last = now;
			last_done = done;
		}
		nanosleep(&ts, NULL);
	}
	for (uint64_t j = 0; j < njobs; j++) {
		pthread_join(jobs[j].thread, NULL);
		if (!jobs[j].ok) {
			fprintf(stderr, "seed_orders: job %d: %s\n", jobs[j].no, jobs[j].err);
			ok = false;
		}
		items += jobs[j].items;
	}
	if (ok && atomic_load(&seed_done) < seed_opt.orders) {
		fprintf(stderr, "seed_orders: interrupted\n");
		ok = false;
	}

	/* All or nothing: commit only when every job succeeded. */
	for (uint64_t j = 0; j < njobs; j++) {
		PGresult *res = PQexec(jobs[j].conn, ok ? "COMMIT" : "ROLLBACK");

		if (ok && PQresultStatus(res) != PGRES_COMMAND_OK) {
			fprintf(stderr, "seed_orders: job %d: COMMIT: %s", jobs[j].no,
			    PQresultErrorMessage(res));
			ok = false;
		}
		PQclear(res);
		free(jobs[j].orders.data);
		free(jobs[j].lines.data);
		free(jobs[j].history.data);
	}
	if (!ok)
		seed_undo_creators(conn);
	else
		seed_progress("%" PRIu64 " orders and %" PRIu64 " items committed in %.1f s",
		    seed_opt.orders, items, seed_clock() - t_start);
	if (!seed_build_indexes(jobs, njobs))
		ok = false;
	for (uint64_t j = 0; j < njobs; j++)
		PQfinish(jobs[j].conn);
	if (!ok)
		seed_fatal("nothing seeded");
	seed_fold_stats(conn);
	seed_progress("analyzing");
	if (!seed_exec(conn, NULL, "ANALYZE creators, shops, orders, order_items, order_status_history,"
	    " order_stats"))
		exit(1);
	PQfinish(conn);
	if (out != NULL)
		seed_write_creators(out);

	elapsed = seed_clock() - t_start;
	printf("seeded orders=%" PRIu64 " items=%" PRIu64 " creators=%" PRIu64
	    " seconds=%.2f orders_per_s=%.0f\n", seed_opt.orders, items, seed_ncreators, elapsed,
	    elapsed > 0 ? seed_opt.orders / elapsed : 0.0);
	free(jobs);
	free(seed_slots);
	free(seed_creators);
	free(seed_index_names);
	free(seed_index_defs);
	return 0;
}
