#!/usr/bin/env bash
# What `npm test` needs from the system, as Debian packages: run before the tests (npm's pretest) and
# by CI. Installed with apt where this runs as root; otherwise the one command to run is printed and
# the tests do not start.
#   python3-onnx     the ONNX checker every model file our code writes must pass (numpy comes with it)
#   python3-optuna   Optuna 3.1, the reference the TPE sampler's split is checked against
#   chromium         renders evaluation reports
#   zip              builds the Lambda layer (npm run build:layer)
#   util-linux, iproute2   unshare and ip: `serverless package` runs in a loopback-only namespace
set -euo pipefail
need=()
/usr/bin/python3 -c 'import onnx, numpy' 2>/dev/null || need+=(python3-onnx python3-numpy)
/usr/bin/python3 -c 'import optuna' 2>/dev/null || need+=(python3-optuna)
[ -x /usr/bin/chromium ] || need+=(chromium)
command -v zip >/dev/null || need+=(zip)
command -v unshare >/dev/null || need+=(util-linux)
command -v ip >/dev/null || need+=(iproute2)
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "installing what the tests need: ${need[*]}" >&2
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
  exit 0
fi
echo "the tests need Debian packages that are not installed; run: sudo apt-get install -y ${need[*]}" >&2
exit 1
