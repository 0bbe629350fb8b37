#!/usr/bin/env bash
# A Chromium for the browser tests (tests/browser) on CI machines that are not Debian:
# GitHub's ubuntu runners (Google Chrome is preinstalled) and CodeBuild's Ubuntu image
# (nothing is). Debian machines (.ci/run) install Debian's chromium package instead.
#   usage: CHROMIUM=/usr/bin/google-chrome bash ci/install-chromium.sh   (make chromium)
# Exits 0 when $CHROMIUM (default /usr/bin/chromium) starts; installs it first if needed.
# Ubuntu's "chromium" package only installs a snap, which cannot run in a container, so on
# Ubuntu the browser comes from Google's apt repository (google-chrome-stable).
set -euo pipefail

browser="${CHROMIUM:-/usr/bin/chromium}"
works() { [ -x "$1" ] && "$1" --headless=new --no-sandbox --version >/dev/null 2>&1; }
if works "$browser"; then
  echo "chromium: $browser ($("$browser" --version))"
  exit 0
fi

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
# shellcheck source=/dev/null
. /etc/os-release
export DEBIAN_FRONTEND=noninteractive
if [ "${ID:-}" = debian ]; then
  as_root apt-get update -qq
  as_root apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null
else
  keyring=/usr/share/keyrings/google-chrome.gpg
  curl -fsSL https://dl.google.com/linux/linux_signing_key.pub | as_root gpg --dearmor --yes -o "$keyring"
  echo "deb [arch=amd64 signed-by=$keyring] https://dl.google.com/linux/chrome/deb/ stable main" \
    | as_root tee /etc/apt/sources.list.d/google-chrome.list >/dev/null
  as_root apt-get update -qq
  as_root apt-get install -y -qq --no-install-recommends google-chrome-stable fonts-dejavu-core >/dev/null
fi
if ! works "$browser"; then
  echo "chromium: installed, but $browser does not start: set CHROMIUM to the browser's path" >&2
  exit 1
fi
echo "chromium: $browser ($("$browser" --version))"
