#!/usr/bin/env bash
# Prints, one a line, the Debian packages that own the shared libraries the given binaries load
# (ldd), so a runtime image can `apt-get install` exactly those and let apt bring the rest.
# Why packages and not copied .so files: apt also brings what ldd cannot see (alternatives such
# as libblas.so.3, data files, plugins opened with dlopen) and keeps the image patchable.
# Libraries that ldd cannot find here (e.g. libcuda.so.1, which the NVIDIA container runtime
# mounts from the host) are reported on stderr and skipped; a found library that no package
# owns is an error.
set -euo pipefail
[ $# -gt 0 ] || { echo "usage: $0 BINARY..." >&2; exit 2; }

owner() {  # owner PATH -> package name(s) without :arch, or nothing
  local p=$1 candidates=("$1")
  candidates+=("$(readlink -f "$p")")
  # Merged /usr: dpkg may know a file as /lib/... while ldd says /usr/lib/... (or the reverse).
  case $p in
    /usr/*) candidates+=("${p#/usr}") ;;
    *) candidates+=("/usr$p") ;;
  esac
  for c in "${candidates[@]}"; do
    if out=$(dpkg-query -S "$c" 2>/dev/null); then
      # "pkg1:amd64, pkg2: /path" -> pkg1 pkg2
      sed -e 's/: .*//' -e 's/, /\n/g' <<<"$out" | sed 's/:.*//'
      return 0
    fi
  done
  return 1
}

status=0
declare -A seen=()
while read -r name arrow path _; do
  if [ "$arrow" = "=>" ] && [ "$path" = "not" ]; then
    echo "runtime-packages: $name not found here; skipped (must come from elsewhere at run time)" >&2
    continue
  fi
  [ "$arrow" = "=>" ] || path=$name        # lines without "=>": the loader itself, or vdso
  [[ $path == /* ]] || continue            # linux-vdso.so.1 has no file
  [ -n "${seen[$path]:-}" ] && continue
  seen[$path]=1
  if ! owner "$path"; then
    echo "runtime-packages: no Debian package owns $path" >&2
    status=1
  fi
done < <(ldd "$@" | grep -v ':$') | sort -u
exit $status
