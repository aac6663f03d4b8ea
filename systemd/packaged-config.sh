#!/usr/bin/env bash
# systemd/packaged-config.sh — writes systemd/polegate.toml, the config the Debian package
# installs as /etc/polegate/polegate.toml: config/example.toml with `plugins_dirs` left to
# its default (/usr/share/polegate/plugins, then /etc/polegate/plugins), since the
# checkout's "../plugins" means nothing under /etc.
# `--check` exits 1 when the committed copy is out of date (CI runs it).
set -euo pipefail
cd "$(dirname "$0")/.."
want=$(sed 's|^plugins_dirs = \["\.\./plugins"\]$|# plugins_dirs = ["/etc/polegate/plugins", "/usr/share/polegate/plugins"]   # the default|' config/example.toml)
grep -q '^# plugins_dirs = \["/etc/polegate' <<<"$want" \
  || { echo "systemd/packaged-config.sh: plugins_dirs line not found in config/example.toml" >&2; exit 1; }
if [ "${1:-}" = "--check" ]; then
  diff -u systemd/polegate.toml <(printf '%s\n' "$want") \
    || { echo "systemd/polegate.toml is stale: run systemd/packaged-config.sh" >&2; exit 1; }
else
  printf '%s\n' "$want" > systemd/polegate.toml
fi
