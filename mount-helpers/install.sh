#!/usr/bin/env bash
# Installs mount.elastic into /sbin (so `mount -t elastic` and fstab work) and elastic into
# /usr/local/bin, from a release build; then their manual pages (elastic(1), mount.elastic(8))
# and shell completions (bash, zsh, fish), all generated from the argument definitions.
#
#   mount-helpers/install.sh [PREFIX]     (PREFIX defaults to /usr/local; DESTDIR is honoured)
set -euo pipefail
cd "$(dirname "$0")/.."
prefix=${1:-/usr/local}
dest=${DESTDIR:-}
swift build -c release --static-swift-stdlib
bin=$(swift build -c release --show-bin-path)
install -D -m 0755 "$bin/mount.elastic" "$dest/sbin/mount.elastic"
install -D -m 0755 "$bin/elastic" "$dest$prefix/bin/elastic"

# Manual pages: the argument parser's generate-manual plugin, one section per tool.
man=$(mktemp -d)
trap 'rm -rf "$man"' EXIT
for section in 1 8; do
  mkdir -p "$man/$section"
  swift package --allow-writing-to-directory "$man/$section" generate-manual \
    --output-directory "$man/$section" --section "$section" --authors "ELASTIC developers" >/dev/null
done
install -D -m 0644 "$man/1/elastic.1" "$dest$prefix/share/man/man1/elastic.1"
install -D -m 0644 "$man/8/mount.elastic.8" "$dest$prefix/share/man/man8/mount.elastic.8"

# Completions, from the binaries themselves.
for tool in elastic mount.elastic; do
  "$bin/$tool" --generate-completion-script bash >"$man/$tool.bash"
  "$bin/$tool" --generate-completion-script zsh >"$man/_$tool"
  "$bin/$tool" --generate-completion-script fish >"$man/$tool.fish"
  install -D -m 0644 "$man/$tool.bash" "$dest$prefix/share/bash-completion/completions/$tool"
  install -D -m 0644 "$man/_$tool" "$dest$prefix/share/zsh/site-functions/_$tool"
  install -D -m 0644 "$man/$tool.fish" "$dest$prefix/share/fish/vendor_completions.d/$tool.fish"
done
echo "installed /sbin/mount.elastic, $prefix/bin/elastic, their manual pages and bash/zsh/fish completions${dest:+ under $dest}"
