/*
 * smap: open addressing, linear probing, FNV-1a with a per-map seed.
 */
#include "config.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "orderflow/smap.h"
#include "orderflow/util.h"

/* A slot: empty (key NULL, not deleted), deleted, or in use. */
struct smap_slot {
	char	*key;
	void	*value;
	bool	deleted;
};

struct smap {
	struct smap_slot *slots;
	size_t		size;		/* slots, a power of two */
	size_t		count;		/* in use */
	size_t		used;		/* in use or deleted: what probing walks over */
	uint32_t	seed;
};

#define SMAP_MIN 16

static uint32_t
smap_hash(const struct smap *m, const char *key)
{
	uint32_t h = 2166136261u ^ m->seed;

	for (const unsigned char *p = (const unsigned char *)key; *p != '\0'; p++)
		h = (h ^ *p) * 16777619u;
	return h ^ (h >> 16);
}

struct smap *
smap_new(void)
{
	struct smap *m = xcalloc(1, sizeof(*m));

	m->size = SMAP_MIN;
	m->slots = xcalloc(m->size, sizeof(*m->slots));
	m->seed = util_random();
	return m;
}

void
smap_free(struct smap *m, void (*free_value)(void *))
{
	if (m == NULL)
		return;
	for (size_t i = 0; i < m->size; i++) {
		if (m->slots[i].key == NULL)
			continue;
		if (free_value != NULL)
			free_value(m->slots[i].value);
		free(m->slots[i].key);
	}
	free(m->slots);
	free(m);
}

/* The slot holding key, or NULL. */
static struct smap_slot *
smap_find(const struct smap *m, const char *key)
{
	size_t mask = m->size - 1, i = smap_hash(m, key) & mask;

	for (size_t n = 0; n < m->size; n++, i = (i + 1) & mask) {
		struct smap_slot *s = &m->slots[i];

		if (s->key == NULL && !s->deleted)
			return NULL;
		if (s->key != NULL && strcmp(s->key, key) == 0)
			return s;
	}
	return NULL;
}

/* Rehash into size slots (drops the deleted ones). */
static void
smap_resize(struct smap *m, size_t size)
{
	struct smap_slot *old = m->slots;
	size_t oldsize = m->size;

	m->slots = xcalloc(size, sizeof(*m->slots));
	m->size = size;
	m->used = m->count;
	for (size_t k = 0; k < oldsize; k++) {
		size_t i;

		if (old[k].key == NULL)
			continue;
		for (i = smap_hash(m, old[k].key) & (size - 1); m->slots[i].key != NULL;
		    i = (i + 1) & (size - 1))
			;
		m->slots[i] = old[k];
	}
	free(old);
}

void *
smap_get(const struct smap *m, const char *key)
{
	struct smap_slot *s = smap_find(m, key);

	return s != NULL ? s->value : NULL;
}

void *
smap_put(struct smap *m, const char *key, void *value)
{
	struct smap_slot *s = smap_find(m, key);
	size_t mask, i;
	void *old;

	if (s != NULL) {
		old = s->value;
		s->value = value;
		return old;
	}
	if ((m->used + 1) * 4 > m->size * 3)
		smap_resize(m, m->count * 2 + 2 > m->size / 2 ? m->size * 2 : m->size);
	mask = m->size - 1;
	for (i = smap_hash(m, key) & mask; m->slots[i].key != NULL; i = (i + 1) & mask)
		;
	if (!m->slots[i].deleted)
		m->used++;
	m->slots[i] = (struct smap_slot){ xstrdup(key), value, false };
	m->count++;
	return NULL;
}

void *
smap_del(struct smap *m, const char *key)
{
	struct smap_slot *s = smap_find(m, key);
	void *v;

	if (s == NULL)
		return NULL;
	v = s->value;
	free(s->key);
	*s = (struct smap_slot){ NULL, NULL, true };
	m->count--;
	if (m->size > SMAP_MIN && m->count * 8 < m->size)
		smap_resize(m, m->size / 2);
	return v;
}

size_t
smap_count(const struct smap *m)
{
	return m->count;
}

bool
smap_next(const struct smap *m, size_t *pos, const char **key, void **value)
{
	for (; *pos < m->size; (*pos)++) {
		if (m->slots[*pos].key != NULL) {
			*key = m->slots[*pos].key;
			*value = m->slots[*pos].value;
			(*pos)++;
			return true;
		}
	}
	return false;
}
