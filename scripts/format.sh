#!/usr/bin/env bash
# Formats the C and C++ sources with the checkout's .clang-format (CI checks it: ctest style.*).
#   scripts/format.sh           rewrite the files in place
#   scripts/format.sh --check   change nothing; exit non-zero and show the offending lines
#                               if any file is not formatted
# CLANG_FORMAT selects the binary (default: clang-format; Debian package clang-format).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
cd "$ROOT"
CLANG_FORMAT=${CLANG_FORMAT:-clang-format}

mode=fix
case "${1:-}" in
  "") ;;
  --check) mode=check ;;
  *)
    echo "usage: $0 [--check]" >&2
    exit 2
    ;;
esac

command -v "$CLANG_FORMAT" >/dev/null 2>&1 ||
  { echo "format: $CLANG_FORMAT not found (apt-get install clang-format)" >&2; exit 1; }

dirs=()
for d in src tests bench firmware-examples; do
  [[ -d "$d" ]] && dirs+=("$d")
done
files=()
if ((${#dirs[@]})); then
  mapfile -d '' files < <(find "${dirs[@]}" -type f \( -name '*.cpp' -o -name '*.hpp' -o -name '*.c' -o -name '*.h' \) -print0 | sort -z)
fi
if ((${#files[@]} == 0)); then
  echo "format: no C++ files"
  exit 0
fi

if [[ $mode == check ]]; then
  if "$CLANG_FORMAT" --dry-run -Werror "${files[@]}"; then
    echo "format: ${#files[@]} files formatted correctly"
  else
    echo "format: files above need formatting: run scripts/format.sh" >&2
    exit 1
  fi
else
  "$CLANG_FORMAT" -i "${files[@]}"
  echo "format: formatted ${#files[@]} files"
fi
