/*
 * smap: a hash map from strings to pointers, for the per-worker tables
 * (workflow runs and parked runs by order id, caches by creator).
 *
 * Open addressing with linear probing; keys are copied; the table doubles
 * past 3/4 full and deleted slots are reused.  The hash is seeded per map
 * (keys such as order ids come from outside).  Owned by one thread.
 */
#ifndef ORDERFLOW_SMAP_H
#define ORDERFLOW_SMAP_H

#include <stdbool.h>
#include <stddef.h>

struct smap;

struct smap *smap_new(void);
/* Free the map; each value goes to free_value first (NULL: left alone). */
void smap_free(struct smap *m, void (*free_value)(void *));
/* The value of key, or NULL. */
void *smap_get(const struct smap *m, const char *key);
/* Set key to value (not NULL); returns the value it replaces, or NULL. */
void *smap_put(struct smap *m, const char *key, void *value);
/* Remove key; returns its value, or NULL. */
void *smap_del(struct smap *m, const char *key);
size_t smap_count(const struct smap *m);
/*
 * Iterate: start with *pos = 0; true with the next key and value until
 * the end.  The map must not change meanwhile.
 */
bool smap_next(const struct smap *m, size_t *pos, const char **key, void **value);

#endif
