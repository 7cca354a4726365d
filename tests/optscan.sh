#!/usr/bin/env bash
# optscan.sh: check that every configuration key of orderflowd is documented.
#
# The keys are the rows of the config table in src/core/config.c, each of which
# starts with `{ "section", "key",`. Every key must have an entry
# `.It Cm section.key` in man/orderflowd.conf.5 and an active `key = value`
# line inside `[section]` in contrib/orderflowd.conf; and neither file may
# document a key that the table does not have.
#
# Usage: tests/optscan.sh [SRCDIR]   (default: the directory above this script)
# Output: TAP, one line per key plus one per stray key; exit 1 on any failure.

# Re-run under bash when started as "sh optscan.sh".
if [ -z "${BASH_VERSION:-}" ]; then
	exec bash "$0" "$@"
fi

set -u

srcdir=${1:-$(cd "$(dirname "$0")/.." && pwd)}
table=$srcdir/src/core/config.c
manpage=$srcdir/man/orderflowd.conf.5
example=$srcdir/contrib/orderflowd.conf

for f in "$table" "$manpage" "$example"; do
	if [ ! -r "$f" ]; then
		echo "1..1"
		echo "not ok 1 - cannot read $f"
		exit 1
	fi
done

# section.key for every row of the table, in table order, without duplicates.
# Only the rows of the "struct config_key NAME[] = {" array count when the
# file has one, so other tables of the same shape are not taken for keys.
row='^[[:space:]]*\{[[:space:]]*"([A-Za-z0-9_]+)"[[:space:]]*,[[:space:]]*"([A-Za-z0-9_]+)"[[:space:]]*,.*'
table_rows=$(tr -d '\r' <"$table" | awk '
	/struct[[:space:]]+config_key[[:space:]]+[A-Za-z0-9_]+[[:space:]]*\[[^]]*\][[:space:]]*=/ { intable = 1; found = 1; next }
	intable && /^[[:space:]]*\}[[:space:]]*;/ { intable = 0 }
	intable { print }
	{ all = all $0 "\n" }
	END { if (!found) printf "%s", all }')
table_keys=$(printf '%s\n' "$table_rows" | sed -nE "s/$row/\\1.\\2/p" | awk '!seen[$0]++')

# section.key for every ".It Cm section.key" entry of the manual page.
man_keys=$(tr -d '\r' <"$manpage" |
    sed -nE 's/^\.It[[:space:]]+Cm[[:space:]]+([A-Za-z0-9_]+\.[A-Za-z0-9_]+)([[:space:]].*)?$/\1/p' |
    awk '!seen[$0]++')

# section.key for every active "key = value" line of the example file; a key
# before any section header is reported as ".key".
conf_keys=$(tr -d '\r' <"$example" | awk '
	/^[[:space:]]*[#;]/ { next }
	/^[[:space:]]*\[/ {
		s = $0
		sub(/^[[:space:]]*\[[[:space:]]*/, "", s)
		sub(/[[:space:]]*\].*$/, "", s)
		section = s
		next
	}
	/^[[:space:]]*[A-Za-z0-9_]+[[:space:]]*=/ {
		k = $0
		sub(/^[[:space:]]*/, "", k)
		sub(/[[:space:]]*=.*$/, "", k)
		print section "." k
	}' | awk '!seen[$0]++')

if [ -z "$table_keys" ]; then
	echo "1..1"
	echo "not ok 1 - no configuration keys found in $table"
	exit 1
fi

# in_list WORD LIST: whether LIST (one item a line) holds WORD.
in_list() {
	printf '%s\n' "$2" | grep -qxF -- "$1"
}

lines=()
failed=0

while IFS= read -r key; do
	missing=()
	in_list "$key" "$man_keys" || missing+=("man/orderflowd.conf.5 (.It Cm $key)")
	in_list "$key" "$conf_keys" || missing+=("contrib/orderflowd.conf (${key#*.} = in [${key%%.*}])")
	if [ ${#missing[@]} -eq 0 ]; then
		lines+=("ok - $key documented")
	else
		failed=$((failed + 1))
		reason=$(printf '%s, ' "${missing[@]}")
		lines+=("not ok - $key documented: missing from ${reason%, }")
	fi
done <<<"$table_keys"

strays=$(printf '%s\n%s\n' "$man_keys" "$conf_keys" | sed '/^$/d' | awk '!seen[$0]++')
while IFS= read -r key; do
	[ -n "$key" ] || continue
	in_list "$key" "$table_keys" && continue
	where=()
	in_list "$key" "$man_keys" && where+=("man/orderflowd.conf.5")
	in_list "$key" "$conf_keys" && where+=("contrib/orderflowd.conf")
	failed=$((failed + 1))
	places=$(printf '%s, ' "${where[@]}")
	lines+=("not ok - $key is not in src/core/config.c but is documented in ${places%, }")
done <<<"$strays"

echo "1..${#lines[@]}"
n=0
for line in "${lines[@]}"; do
	n=$((n + 1))
	case $line in
	"ok - "*) printf 'ok %d - %s\n' "$n" "${line#ok - }" ;;
	*) printf 'not ok %d - %s\n' "$n" "${line#not ok - }" ;;
	esac
done

if [ "$failed" -ne 0 ]; then
	echo "# $failed of ${#lines[@]} checks failed" >&2
	exit 1
fi
exit 0
