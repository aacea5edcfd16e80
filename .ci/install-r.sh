#!/usr/bin/env bash
# R for the live cross-checks of the analysis (R's smooth(), lm, lme4). The
# stored reference values are checked without R; with R the tests also compare
# against a live R. Installs Debian's r-base-core and r-cran-lme4 (~40 s) when
# run as root with apt and R is missing; otherwise says why it did nothing.
# Run by `make test` only with LCM_TEST_SYSTEM=1 (make test-system, CI), where
# a failure to install fails the tests.
set -uo pipefail
if command -v Rscript >/dev/null 2>&1 && Rscript -e 'library(lme4)' >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" != "0" ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "install-r.sh: not root or no apt-get: the live R cross-checks will be skipped" >&2
  [ "${LCM_TEST_SYSTEM:-}" = "1" ] && exit 1
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
pkgs="r-base-core r-cran-lme4"
if ! apt-get install -y -q --no-install-recommends $pkgs >/tmp/install-r.log 2>&1; then
  apt-get update -q >>/tmp/install-r.log 2>&1
  apt-get install -y -q --no-install-recommends $pkgs >>/tmp/install-r.log 2>&1 || {
    echo "install-r.sh: apt-get could not install R ($pkgs); see /tmp/install-r.log" >&2
    [ "${LCM_TEST_SYSTEM:-}" = "1" ] && exit 1
    exit 0
  }
fi
echo "install-r.sh: installed $(Rscript --version 2>&1 | head -1)" >&2
