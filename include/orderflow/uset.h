/*
 * uset: a set of UUIDs, stored as 16 bytes each in one array.
 *
 * For tables that hold one entry per order for a long time (the workflow
 * engine's parked runs): no allocation per entry, so 100,000 entries cost
 * a few MiB in two arrays, and freeing what surrounded them (jobs, query
 * results) leaves whole pages free for the allocator to give back.
 *
 * Open addressing with linear probing over a power-of-two table that
 * doubles past 3/4 full (deleted slots are reused, and a table with many
 * of them is rebuilt at the same size); the hash is seeded per set.
 * Members are given as text (8-4-4-4-12 hex digits, either case).
 * Owned by one thread.
 */
#ifndef ORDERFLOW_USET_H
#define ORDERFLOW_USET_H

#include <stdbool.h>
#include <stddef.h>

struct uset;

struct uset *uset_new(void);
void uset_free(struct uset *s);
/* Parse a UUID's text into 16 bytes; false when it is not one. */
bool uset_parse(const char *text, unsigned char out[16]);
/* Add uuid; false when it is not a UUID (nothing added). */
bool uset_add(struct uset *s, const char *uuid);
/* Remove uuid; true when it was there. */
bool uset_del(struct uset *s, const char *uuid);
bool uset_has(const struct uset *s, const char *uuid);
size_t uset_count(const struct uset *s);
/* Bytes the set holds (its arrays), for tests and metrics. */
size_t uset_bytes(const struct uset *s);

#endif
