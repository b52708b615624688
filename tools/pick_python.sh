#!/bin/sh
# Print the path of the first given Python that search-sessions supports: CPython 3.11 or
# 3.12. Bytewax 0.21.1 ships wheels only for those (no 3.13 wheel, no sdist), so on any
# other Python pip stops with "Cannot install ... ResolutionImpossible".
#
#   tools/pick_python.sh                   # tries python3.12, python3.11, python3 on PATH
#   tools/pick_python.sh /path/to/python   # checks just that one (make PYTHON=...)
#
# Each candidate is run, not just looked up: a pyenv shim such as python3.12 is on PATH
# whenever pyenv has that version somewhere, and fails when the version is not selected.
# If none fits, prints one line saying what works and what was found, and exits 1.
set -u
[ $# -gt 0 ] || set -- python3.12 python3.11 python3
tried="$*"
found=""
for py in "$@"; do
    if out=$("$py" -c 'import sys; v = sys.version_info
print(sys.implementation.name, "%d.%d.%d" % v[:3], sys.executable)' 2>/dev/null); then
        impl=${out%% *}
        rest=${out#* }
        version=${rest%% *}
        exe=${rest#* }
        case "$impl $version" in
            "cpython 3.11."* | "cpython 3.12."*)
                printf '%s\n' "${exe:-$py}"
                exit 0
                ;;
        esac
        [ "$impl" = cpython ] || version="$version ($impl)"
        found="$found${found:+, }$py $version"
    elif command -v "$py" >/dev/null 2>&1; then
        found="$found${found:+, }$py (fails to run)"
    fi
done
echo "search-sessions needs CPython 3.11 or 3.12 (Bytewax 0.21.1 ships wheels only for those);" \
    "found: ${found:-none of $tried}; pass one with make PYTHON=/path/to/python3.12" >&2
exit 1
