# Sourced by setup.sh and test.sh. Sets KILN_PYTHON to a Python that has the pinned
# packages of requirements.txt: build/venv if setup.sh made one, else python3 if it
# already has them; empty when neither does.
KILN_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

kiln_has_requirements() {
  "$1" - "$KILN_ROOT/requirements.txt" <<'PYEOF' 2>/dev/null
import importlib.metadata as md
import sys
ok = True
for line in open(sys.argv[1]):
    line = line.split("#")[0].strip()
    if not line:
        continue
    name, _, version = line.partition("==")
    try:
        if version and md.version(name) != version:
            ok = False
    except md.PackageNotFoundError:
        ok = False
sys.exit(0 if ok else 1)
PYEOF
}

KILN_PYTHON=""
for candidate in "$KILN_ROOT/build/venv/bin/python3" "$(command -v python3 || true)"; do
  if [ -n "$candidate" ] && [ -x "$candidate" ] && kiln_has_requirements "$candidate"; then
    KILN_PYTHON="$candidate"
    break
  fi
done
export KILN_PYTHON
