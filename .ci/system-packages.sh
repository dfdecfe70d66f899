#!/usr/bin/env bash
# The system packages `make test` needs, installed where they are missing and this user may install
# them; otherwise one message with the command to run, and exit status 1 (before any test runs).
#
#   dataset-fashion-mnist   real Fashion-MNIST, offline: the chapters and the data tests read it
#   chromium, chromium-driver   headless Chromium for tests/test_browser.py
#
# Idempotent and fast: with everything present it only looks at a few paths (no apt-get at all).
# Installs with apt-get (Debian/Ubuntu) as root, or through `sudo -n` (sudo without a password).
# `make book` needs none of them: the book build is offline and shows the outputs stored in the
# notebooks (MathJax comes from a pip package).
#
# ICD_SYSTEM_DATA: where to look for Debian's datasets instead of /usr/share/datasets (as the
# tests and icd_lib do); with it set this script only checks, it never installs.
set -euo pipefail

datasets="${ICD_SYSTEM_DATA:-/usr/share/datasets}"
fashion_mnist_present() {
  local f
  for f in train-images-idx3-ubyte train-labels-idx1-ubyte t10k-images-idx3-ubyte t10k-labels-idx1-ubyte; do
    [ -f "$datasets/fashion-mnist/$f.gz" ] || return 1
  done
}

missing=()
fashion_mnist_present || missing+=(dataset-fashion-mnist)
command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || missing+=(chromium)
command -v chromedriver >/dev/null 2>&1 || missing+=(chromium-driver)
[ ${#missing[@]} -eq 0 ] && exit 0

fail() {
  echo >&2
  echo "make test needs the system packages ${missing[*]}, which are missing here. $1" >&2
  echo "Then run make test again. (make book needs none of them.)" >&2
  exit 1
}

command="sudo apt-get update && sudo apt-get install -y ${missing[*]}"
if ! command -v apt-get >/dev/null 2>&1; then
  fail "This machine has no apt-get: install Chromium and chromedriver with its package manager, and put Fashion-MNIST's four .gz files (https://github.com/zalandoresearch/fashion-mnist) in $datasets/fashion-mnist/."
fi
if [ -n "${ICD_SYSTEM_DATA:-}" ]; then
  fail "ICD_SYSTEM_DATA=$ICD_SYSTEM_DATA is set, so nothing is installed: unset it, or put the files there; to install: $command"
fi
if [ "$(id -u)" -eq 0 ]; then
  as_root=()
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
  as_root=(sudo -n)
else
  fail "Install them with: $command"
fi

echo "Installing the system packages make test needs: ${missing[*]} (apt-get)"
if ! ${as_root[@]+"${as_root[@]}"} env DEBIAN_FRONTEND=noninteractive apt-get update -qq; then
  fail "apt-get update failed (see above). Install them with: $command"
fi
# Ubuntu names two of them differently (and its chromium-browser is a snap, which containers lack).
packages=()
for package in "${missing[@]}"; do
  if ! apt-cache show "$package" >/dev/null 2>&1; then
    case "$package" in
      chromium) apt-cache show chromium-browser >/dev/null 2>&1 && package=chromium-browser ;;
      chromium-driver) apt-cache show chromium-chromedriver >/dev/null 2>&1 && package=chromium-chromedriver ;;
    esac
  fi
  packages+=("$package")
done
if ! ${as_root[@]+"${as_root[@]}"} env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${packages[@]}" >/dev/null; then
  fail "apt-get install ${packages[*]} failed (see above). Install them with: $command"
fi

still=()
fashion_mnist_present || still+=(dataset-fashion-mnist)
command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || still+=(chromium)
command -v chromedriver >/dev/null 2>&1 || still+=(chromium-driver)
if [ ${#still[@]} -ne 0 ]; then
  missing=("${still[@]}")
  fail "apt-get installed ${packages[*]}, but ${still[*]} still cannot be found (on Ubuntu, chromium-browser is a snap, which containers lack); install by hand."
fi
echo "Installed: ${packages[*]}"
