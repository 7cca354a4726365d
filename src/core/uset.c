/*
 * uset: UUIDs in an open-addressing table; keys in one array, slot
 * states in another (empty, used, deleted).
 */
#include "config.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "orderflow/util.h"
#include "orderflow/uset.h"

#define USET_MIN 64

enum { USET_EMPTY, USET_USED, USET_DELETED };

struct uset {
	unsigned char	(*keys)[16];
	unsigned char	*state;
	size_t		size;		/* slots, a power of two */
	size_t		count;		/* used */
	size_t		deleted;	/* deleted: probing walks over them */
	uint64_t	seed;
};

static int
uset_hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

bool
uset_parse(const char *text, unsigned char out[16])
{
	int n = 0;

	for (int i = 0; i < 36; i++) {
		int hi, lo;

		if (i == 8 || i == 13 || i == 18 || i == 23) {
			if (text[i] != '-')
				return false;
			continue;
		}
		if ((hi = uset_hexval(text[i])) < 0 || (lo = uset_hexval(text[i + 1])) < 0)
			return false;
		out[n++] = (unsigned char)(hi << 4 | lo);
		i++;
	}
	return text[36] == '\0';
}

/* splitmix64 of the key's halves, seeded: order ids are random, but need not be. */
static size_t
uset_hash(const struct uset *s, const unsigned char k[16])
{
	uint64_t a, b, h;

	memcpy(&a, k, 8);
	memcpy(&b, k + 8, 8);
	h = a ^ (b * 0x9e3779b97f4a7c15ull) ^ s->seed;
	h ^= h >> 30;
	h *= 0xbf58476d1ce4e5b9ull;
	h ^= h >> 27;
	h *= 0x94d049bb133111ebull;
	h ^= h >> 31;
	return (size_t)h;
}

static void
uset_alloc(struct uset *s, size_t size)
{
	s->size = size;
	s->keys = xcalloc(size, sizeof(*s->keys));
	s->state = xcalloc(size, 1);
	s->count = 0;
	s->deleted = 0;
}

struct uset *
uset_new(void)
{
	struct uset *s = xcalloc(1, sizeof(*s));

	uset_alloc(s, USET_MIN);
	s->seed = (uint64_t)util_random() << 32 | util_random();
	return s;
}

void
uset_free(struct uset *s)
{
	if (s == NULL)
		return;
	free(s->keys);
	free(s->state);
	free(s);
}

/* The slot of k, or of where it would go (the first deleted or empty slot). */
static size_t
uset_slot(const struct uset *s, const unsigned char k[16], bool *found)
{
	size_t mask = s->size - 1, i = uset_hash(s, k) & mask, spare = SIZE_MAX;

	*found = false;
	for (size_t n = 0; n < s->size; n++, i = (i + 1) & mask) {
		if (s->state[i] == USET_EMPTY)
			return spare != SIZE_MAX ? spare : i;
		if (s->state[i] == USET_DELETED) {
			if (spare == SIZE_MAX)
				spare = i;
		} else if (memcmp(s->keys[i], k, 16) == 0) {
			*found = true;
			return i;
		}
	}
	return spare;	/* never SIZE_MAX: the table is never full */
}

/* A table of size, with the members of s. */
static void
uset_rebuild(struct uset *s, size_t size)
{
	unsigned char (*keys)[16] = s->keys, *state = s->state;
	size_t old = s->size;
	bool found;

	uset_alloc(s, size);
	for (size_t i = 0; i < old; i++) {
		if (state[i] != USET_USED)
			continue;
		size_t j = uset_slot(s, keys[i], &found);

		memcpy(s->keys[j], keys[i], 16);
		s->state[j] = USET_USED;
		s->count++;
	}
	free(keys);
	free(state);
}

bool
uset_add(struct uset *s, const char *uuid)
{
	unsigned char k[16];
	bool found;
	size_t i;

	if (uuid == NULL || !uset_parse(uuid, k))
		return false;
	if ((s->count + s->deleted + 1) * 4 > s->size * 3)
		uset_rebuild(s, s->count * 2 + 1 > s->size / 2 ? s->size * 2 : s->size);
	i = uset_slot(s, k, &found);
	if (found)
		return true;
	if (s->state[i] == USET_DELETED)
		s->deleted--;
	memcpy(s->keys[i], k, 16);
	s->state[i] = USET_USED;
	s->count++;
	return true;
}

bool
uset_del(struct uset *s, const char *uuid)
{
	unsigned char k[16];
	bool found;
	size_t i;

	if (uuid == NULL || !uset_parse(uuid, k))
		return false;
	i = uset_slot(s, k, &found);
	if (!found)
		return false;
	s->state[i] = USET_DELETED;
	s->count--;
	s->deleted++;
	return true;
}

bool
uset_has(const struct uset *s, const char *uuid)
{
	unsigned char k[16];
	bool found;

	if (uuid == NULL || !uset_parse(uuid, k))
		return false;
	(void)uset_slot(s, k, &found);
	return found;
}

size_t
uset_count(const struct uset *s)
{
	return s->count;
}

size_t
uset_bytes(const struct uset *s)
{
	return s->size * (sizeof(*s->keys) + 1);
}
