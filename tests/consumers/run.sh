#!/usr/bin/env bash
# percore as its users get it; registered as ctest tests by tests/CMakeLists.txt.
#   run.sh find_package BUILD_DIR             cmake --install BUILD_DIR into a temporary prefix, then
#                                             find_package(percore) and pkg-config percore users of it
#   run.sh subdirectory SOURCE_DIR            add_subdirectory(percore) in a Debug parent project
#   run.sh deb BUILD_DIR VERSION              cpack -G DEB, its contents, hello_cores from it
#   run.sh coroutines BUILD_DIR SOURCE_DIR    tests/http/task_test.cc built by clang with
#                                             AddressSanitizer on an installed percore, and
#                                             OnThread awaited as a temporary refused by g++
# Everything is built in a temporary directory, removed at the end.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
mode=$1
shift

fail() { echo "run.sh $mode: FAILED: $*" >&2; exit 1; }
# Runs a command, showing its output only when it fails.
quiet() {
  local log
  log=$("$@" 2>&1) || { echo "$log" | tail -40 >&2; fail "$*"; }
}

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# -O0 and no debug information: these builds check that things link and run, fast.
fast=(-G Ninja -DCMAKE_BUILD_TYPE=Debug -DCMAKE_CXX_FLAGS_DEBUG=-O0)

case $mode in
  find_package)
    build_dir=$1
    quiet cmake --install "$build_dir" --prefix "$tmp/prefix"
    for f in lib/cmake/percore/percoreConfig.cmake lib/cmake/percore/percoreConfigVersion.cmake \
             lib/pkgconfig/percore.pc lib/libpercore_core.a lib/libpercore_http.a \
             lib/libpercore_testing.a include/percore/http/app.h include/percore/version.h; do
      [[ -f $tmp/prefix/$f ]] || fail "cmake --install did not install $f"
    done
    # Nothing of the tests or benchmarks: only bin/hello_cores, include/, lib/.
    extra=$(cd "$tmp/prefix" && find . -type f | grep -vE '^\./(bin/hello_cores|include/percore/|lib/)' || true)
    [[ -z $extra ]] || fail "cmake --install installed more than percore: $extra"

    quiet cmake -S "$here/find_package" -B "$tmp/fp" "${fast[@]}" -DCMAKE_PREFIX_PATH="$tmp/prefix"
    quiet cmake --build "$tmp/fp"
    "$tmp/fp/consumer"

    # The same program through pkg-config alone.
    export PKG_CONFIG_PATH=$tmp/prefix/lib/pkgconfig
    cflags=$(pkg-config --cflags percore)
    libs=$(pkg-config --libs percore)
    [[ $cflags == *"-I$tmp/prefix/lib/pkgconfig/../../include"* ]] || fail "pkg-config --cflags: $cflags"
    # shellcheck disable=SC2086  # the flags are words
    quiet c++ -std=c++20 -O0 $cflags "$here/main.cc" -o "$tmp/pc_consumer" $libs
    "$tmp/pc_consumer"
    ;;
  subdirectory)
    source_dir=$1
    # First with no build type at all, which percore as top level would default to Release: the
    # parent's check (subdirectory/CMakeLists.txt) fails if percore writes one into the cache.
    quiet cmake -S "$here/subdirectory" -B "$tmp/sub" -G Ninja -DPERCORE_SOURCE_DIR="$source_dir"
    # Then the parent's own Debug, kept through add_subdirectory, and built.
    quiet cmake -S "$here/subdirectory" -B "$tmp/sub" "${fast[@]}" -DCMAKE_C_FLAGS_DEBUG=-O0
    grep -q '^CMAKE_BUILD_TYPE:STRING=Debug$' "$tmp/sub/CMakeCache.txt" || fail "build type is not Debug"
    quiet cmake --build "$tmp/sub"
    "$tmp/sub/consumer"
    built=$(cd "$tmp/sub" && find . -path ./CMakeFiles -prune -o -type f \( -executable -o -name '*.a' \) -print |
              sort | tr '\n' ' ')
    want="./consumer ./percore/libpercore_core.a ./percore/libpercore_http.a ./percore/libpercore_testing.a "
    [[ $built == "$want" ]] || fail "built $built, expected $want"
    ;;
  deb)
    build_dir=$1 version=$2
    cd "$build_dir"
    quiet cpack -G DEB -B "$tmp/cpack"
    deb=$tmp/cpack/percore_${version}_$(dpkg --print-architecture).deb
    [[ -f $deb ]] || fail "cpack made no $deb: $(ls "$tmp/cpack")"
    dpkg-deb -f "$deb" Package Version Maintainer Depends
    contents=$(dpkg-deb -c "$deb" | awk '{print $6}')
    for f in ./usr/bin/hello_cores ./usr/lib/libpercore_core.a ./usr/lib/libpercore_http.a \
             ./usr/lib/libpercore_testing.a ./usr/lib/cmake/percore/percoreConfig.cmake \
             ./usr/lib/cmake/percore/percoreConfigVersion.cmake ./usr/lib/pkgconfig/percore.pc \
             ./usr/include/percore/engine.h ./usr/include/percore/http/app.h \
             ./usr/include/percore/testing/client.h ./usr/include/percore/version.h; do
      grep -qxF "$f" <<<"$contents" || fail "$f is not in the .deb"
    done
    # Installed into a scratch root: the binary from the package runs and says its version.
    dpkg -x "$deb" "$tmp/root"
    got=$("$tmp/root/usr/bin/hello_cores" --version)
    [[ $got == "hello_cores $version" ]] || fail "hello_cores --version said '$got'"
    echo "$got"
    ;;
  coroutines)
    build_dir=$1 source_dir=$2
    quiet cmake --install "$build_dir" --prefix "$tmp/prefix"
    export PKG_CONFIG_PATH=$tmp/prefix/lib/pkgconfig
    cflags=$(pkg-config --cflags percore)
    libs=$(pkg-config --libs percore)
    # The documented coroutine pattern with owning captures, under clang's ASan (the suite runs
    # it under g++'s).
    # shellcheck disable=SC2086  # the flags are words
    quiet clang++ -std=c++20 -O1 -g -fsanitize=address,undefined -fno-sanitize-recover=all \
      $cflags "$source_dir/tests/http/task_test.cc" -o "$tmp/task_test" $libs -lgtest_main -lgtest
    "$tmp/task_test" --gtest_brief=1
    # co_await OnThread(...) on a temporary: the form GCC 12 miscompiles must not compile.
    cat >"$tmp/temporary.cc" <<'CC'
#include "percore/http/task.h"
percore::http::Task Handler(const percore::http::Request& req, percore::http::Response) {
  std::string id = "7";
  co_await percore::http::OnThread(req.worker(), [](std::function<void()> job) { job(); },
                                   [id] { return id; });
}
CC
    # shellcheck disable=SC2086
    if out=$(c++ -std=c++20 -fsyntax-only $cflags "$tmp/temporary.cc" 2>&1); then
      fail "co_await on a temporary OnThread compiled"
    fi
    grep -q "deleted function" <<<"$out" || fail "refused for another reason: $(tail -5 <<<"$out")"
    echo "co_await on a temporary OnThread is refused (deleted function)"
    ;;
  *) fail "unknown mode" ;;
esac
echo "run.sh $mode: ok"
