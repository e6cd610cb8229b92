#!/usr/bin/env bash
# Build a release binary of wxlogin that runs on any x86_64 Linux: statically linked
# against musl, no shared libraries, no CA bundle needed on the server (the HTTPS client
# carries its own root certificates).
#
# Usage (from anywhere in the repository):   deploy/build-static.sh
# Result:   target/dist/wxlogin-<version>-x86_64-unknown-linux-musl
#           target/dist/sha256sums.txt
# (under $CARGO_TARGET_DIR instead of target/ when that is set)
# Copy both to the server and check there:   sha256sum -c sha256sums.txt
#
# Needs:
#   - Rust installed with rustup (https://rustup.rs).
#   - The musl target. This script runs "rustup target add x86_64-unknown-linux-musl"
#     when it is missing, which downloads from the Rust distribution server
#     (static.rust-lang.org). Without access to it, set RUSTUP_DIST_SERVER to a mirror
#     or add the target on a machine that has access.
#   - musl-gcc, because bundled SQLite and ring contain C code that must be compiled for
#     musl. On Debian/Ubuntu:  sudo apt-get install musl-tools
#   - strip and readelf (binutils; present wherever gcc is).
set -euo pipefail

TARGET=x86_64-unknown-linux-musl

say() { printf '==> %s\n' "$*"; }
die() { printf 'build-static.sh: error: %s\n' "$*" >&2; exit 1; }

# Work from the repository root, wherever the script was started.
cd "$(dirname "${BASH_SOURCE[0]}")/.."
[ -f Cargo.toml ] || die "Cargo.toml not found in $(pwd); run this script from the wxlogin repository."

[ "$(uname -m)" = x86_64 ] \
    || die "this recipe builds on an x86_64 machine (this one is $(uname -m)); for aarch64 see 'cargo zigbuild' or 'cross'."
command -v cargo >/dev/null || die "cargo not found. Install Rust with rustup: https://rustup.rs"
command -v rustup >/dev/null || die "rustup not found. The musl target is installed with rustup: https://rustup.rs"
command -v musl-gcc >/dev/null \
    || die "musl-gcc not found. On Debian/Ubuntu: sudo apt-get install musl-tools (bundled SQLite and ring contain C code that must be compiled for musl)."
command -v strip >/dev/null || die "strip not found. On Debian/Ubuntu: sudo apt-get install binutils"
command -v readelf >/dev/null || die "readelf not found. On Debian/Ubuntu: sudo apt-get install binutils"
command -v sha256sum >/dev/null || die "sha256sum not found (GNU coreutils)."

if rustup target list --installed | grep -qx "$TARGET"; then
    say "Rust target $TARGET is installed."
else
    say "Adding the Rust target $TARGET (downloads from ${RUSTUP_DIST_SERVER:-https://static.rust-lang.org})."
    rustup target add "$TARGET" \
        || die "'rustup target add $TARGET' failed. It needs the Rust distribution server; set RUSTUP_DIST_SERVER to a mirror if that server is unreachable."
fi

VERSION=$(sed -n 's/^version[[:space:]]*=[[:space:]]*"\([^"]*\)".*/\1/p' Cargo.toml | head -n 1)
[ -n "$VERSION" ] || die "could not read the version from Cargo.toml."

# cc-rs would otherwise look for a compiler named x86_64-linux-musl-gcc, which Debian's
# musl-tools does not provide.
export CC_x86_64_unknown_linux_musl=musl-gcc

say "Building wxlogin $VERSION for $TARGET (release profile; this takes a few minutes)."
# --locked: build exactly the dependency versions in Cargo.lock.
cargo build --release --locked --target "$TARGET" \
    || die "cargo build failed (see the messages above)."

# Cargo builds into $CARGO_TARGET_DIR when it is set (relative to here, like cargo does).
TARGET_DIR=${CARGO_TARGET_DIR:-target}
BIN="$TARGET_DIR/$TARGET/release/wxlogin"
[ -x "$BIN" ] || die "the build finished but $BIN is missing."

DIST=$TARGET_DIR/dist
NAME="wxlogin-$VERSION-$TARGET"
mkdir -p "$DIST"
cp "$BIN" "$DIST/$NAME"
strip "$DIST/$NAME"

# A dynamically linked binary names its loader (the "program interpreter"); a static one
# does not.
if readelf -l "$DIST/$NAME" | grep -q 'program interpreter'; then
    die "$DIST/$NAME is dynamically linked; expected a static binary."
fi

# Fails here rather than on the server if the binary cannot even start.
"$DIST/$NAME" --version >/dev/null || die "$DIST/$NAME --version failed."

(cd "$DIST" && sha256sum "$NAME" > sha256sums.txt)

say "Done: static binary, $(du -h "$DIST/$NAME" | cut -f1)."
say "  $DIST/$NAME"
say "  $DIST/sha256sums.txt"
say "On the server: sha256sum -c sha256sums.txt && sudo install -m 0755 $NAME /usr/local/bin/wxlogin"
