#!/usr/bin/env bash
# Prints, one a line, the Debian packages that own the shared libraries the given binaries load
# (as ldd resolves them), so that a runtime image can `apt-get install` exactly those and let apt
# bring their dependencies. Why packages rather than copying the .so files: apt also brings what
# ldd cannot see (alternatives such as libblas.so.3, data files, plugins opened with dlopen), and
# the image stays patchable with apt.
#
# A library ldd cannot find here (libcuda.so.1, which the NVIDIA container runtime mounts from
# the host) is reported on stderr and skipped; a library found but owned by no package (built
# from source into /usr/local, say) is an error: the runtime image would lack it.
set -euo pipefail
[ $# -gt 0 ] || { echo "usage: $0 BINARY..." >&2; exit 2; }

# The libraries: "name => /path (addr)", "/lib64/ld-linux... (addr)", "name => not found";
# with several binaries ldd heads each list with "BINARY:".
mapfile -t libs < <(ldd "$@" | awk '
  NF == 1 && /:$/ { next }
  $2 == "=>" && $3 == "not" { print "missing " $1; next }
  $2 == "=>" && $3 ~ /^\// { print $3; next }
  $1 ~ /^\// { print $1 }' | sort -u)

# Each library may be known to dpkg under its own path, its real path (alternatives, symlinks)
# or the other side of the merged /usr (/lib/... versus /usr/lib/...). Ask dpkg once for all.
declare -A owner=()
candidates=()
for lib in "${libs[@]}"; do
  [[ $lib == missing* ]] && continue
  real=$(readlink -f "$lib")
  for p in "$lib" "$real"; do
    candidates+=("$p")
    case $p in /usr/*) candidates+=("${p#/usr}") ;; *) candidates+=("/usr$p") ;; esac
  done
done
while IFS= read -r line; do
  # "pkg1:amd64, pkg2: /path" (diversions print other lines; they have no ": /")
  [[ $line == *": /"* ]] || continue
  pkgs=${line%%: /*}
  owner[${line#*: }]=$(for p in ${pkgs//, / }; do printf '%s ' "${p%%:*}"; done)
done < <(dpkg-query -S "${candidates[@]}" 2>/dev/null || true)

# The braces make one pipeline element, so its exit status survives `| sort -u` (pipefail).
{
  status=0
  for lib in "${libs[@]}"; do
    if [[ $lib == missing* ]]; then
      echo "runtime-packages: ${lib#missing } not found here; skipped" >&2
      continue
    fi
    real=$(readlink -f "$lib")
    found=""
    for p in "$lib" "$real" "${lib#/usr}" "/usr$lib" "${real#/usr}" "/usr$real"; do
      if [ -n "${owner[$p]:-}" ]; then found=${owner[$p]}; break; fi
    done
    if [ -z "$found" ]; then
      echo "runtime-packages: no Debian package owns $lib" >&2
      status=1
    fi
    for pkg in $found; do echo "$pkg"; done
  done
  exit "$status"
} | sort -u
