#!/usr/bin/env bash
# Installs what a fresh Debian machine with only the Rust toolchain lacks.
# RocksDB's bindgen needs libclang; protoc is vendored (protoc-bin-vendored),
# never taken from the system.
set -euo pipefail

# libclang itself (libclang.so / libclang-14.so.*), not libclang-cpp, which a
# fresh Debian has and bindgen cannot use.
have_libclang() {
  ldconfig -p 2>/dev/null | grep -qE 'libclang(-[0-9.]+)?\.so' && return 0
  compgen -G '/usr/lib/llvm-*/lib/libclang.so*' >/dev/null || compgen -G '/usr/lib/llvm-*/lib/libclang-[0-9]*.so*' >/dev/null
}

if ! have_libclang; then
  echo "==> installing libclang-dev (needed by RocksDB's bindgen)"
  SUDO=""
  if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq libclang-dev >/dev/null
fi

# RocksDB is compiled for SSE4.2 and PCLMUL on x86-64 (`.cargo/config.toml`):
# say so here rather than let a binary die of an illegal instruction.
if [ "$(uname -m)" = x86_64 ] && [ -r /proc/cpuinfo ]; then
  for flag in sse4_2 pclmulqdq; do
    if ! grep -qw "$flag" /proc/cpuinfo; then
      echo "this CPU lacks $flag, which the build needs for RocksDB's hardware CRC32C (see .cargo/config.toml)" >&2
      exit 1
    fi
  done
fi
