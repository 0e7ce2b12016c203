#!/usr/bin/env bash
# fuzz.sh FUZZTIME package:Target... runs each fuzz target for FUZZTIME,
# one after another (Go fuzzes one target per package at a time).
#
# A target fails the run when it finds something: Go then writes the
# failing input under the package's testdata/fuzz/ ("Failing input written
# to"), or the run fails any other way. Go 1.26's fuzzing coordinator can
# also fail a target with a bare "context deadline exceeded" as its
# -fuzztime runs out, having found nothing (go.dev/issue/75804, fixed in Go
# 1.27): such a run is tried once more, and if that second run ends the
# same way it is reported and tolerated, never when an input was written.
set -u
go=${GO:-go}
fuzztime=$1
shift
failed=0
for t in "$@"; do
	pkg=${t%%:*} name=${t#*:}
	for try in 1 2; do
		again=""
		[ "$try" -eq 2 ] && again=" (again)"
		echo "fuzz $t for $fuzztime$again"
		out=$("$go" test -run '^$' -fuzz "^${name}\$" -fuzztime "$fuzztime" "$pkg" 2>&1)
		rc=$?
		printf '%s\n' "$out" | tail -n 4
		if [ $rc -eq 0 ]; then
			break
		fi
		if printf '%s' "$out" | grep -q 'Failing input written to' ||
			! printf '%s' "$out" | grep -q 'context deadline exceeded'; then
			printf '%s\n' "$out"
			echo "fuzz $t: FAILED" >&2
			failed=1
			break
		fi
		if [ $try -eq 2 ]; then
			echo "fuzz $t: Go's fuzzer stopped at its own deadline twice without a failing input (go.dev/issue/75804); tolerated" >&2
		fi
	done
done
exit $failed
