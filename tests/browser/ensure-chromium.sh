#!/usr/bin/env sh
# The browser tests drive Debian's chromium (never a Playwright-downloaded browser). Install it once.
set -e
[ -x /usr/bin/chromium ] && exit 0
if [ "$(id -u)" -eq 0 ]; then apt=apt-get; else apt="sudo apt-get"; fi
export DEBIAN_FRONTEND=noninteractive
$apt install -y -q --no-install-recommends chromium >/dev/null 2>&1 || { $apt update -q >/dev/null && $apt install -y -q --no-install-recommends chromium >/dev/null; }
[ -x /usr/bin/chromium ] || { echo "could not install chromium; the browser tests need /usr/bin/chromium" >&2; exit 1; }
