#!/bin/bash
# Install snisd in an emulated arm64 Debian root and run a test subset there.
#
#   sudo tools/arm64_check.sh [--suite bookworm|trixie] [--root DIR] [--ref REF]
#                             [--tests "FILE ..."] [--cpu QEMU_CPU] [--frames N]
#                             [--worktree] [--no-tests] [--shell]
#
# The answer to "does it install and run on a Raspberry Pi / Odroid?" without a board: an arm64
# Debian root built with debootstrap (--foreign, then the second stage under qemu-user), snisd
# installed in it the way docs/BOARD.md tells a board user (python3-venv, a virtualenv with
# --system-site-packages, pip install of a copy of the repository, tools/install_board.sh
# --no-start for the config and the systemd unit), then a documented test subset and an
# encode/decode round trip with the shipped int8 model.  Prints the installed versions, a
# duration for every step and PASS or FAIL; the same report is written to DIR/last-result.txt.
#
# Options:
#   --suite S     Debian suite of the root: bookworm (Python 3.11, default) or trixie (3.13)
#   --root DIR    where the roots are cached (default /var/tmp/snisd-arm64); the root itself is
#                 DIR/SUITE.  Re-runs reuse it: debootstrap and apt run only when not done yet,
#                 the snisd virtualenv is rebuilt every run (pip's wheel cache is kept).
#   --ref REF     git revision to test (default HEAD), exported with `git archive`
#   --worktree    test the working tree instead (tracked and untracked, not ignored, files)
#   --tests "..." test files, relative to the repository (default: the subset below)
#   --cpu NAME    QEMU_CPU for the emulator (default cortex-a72, the Pi 4 core: ARMv8.0, no
#                 dot-product instructions; "max" enables everything qemu knows)
#   --frames N    frames for the round trip (default 4)
#   --no-tests    install and report versions only
#   --shell       after the run, open a shell in the root (with /proc, /sys, /dev mounted)
#
# Default test subset (emulation runs LiteRT about 10-30x slower than the host):
# tests/test_rangecoder.py tests/test_codec.py tests/test_model.py tests/container/
# tests/test_native_core.py (the core's C checks, built with the root's gcc; their comparison with
# x86 skips there, as the root has no qemu -- .ci/run makes that comparison on the host).
# The daemon, capture and systemd tests are left out: they spawn processes and wait on
# wall-clock timeouts that emulation does not meet, and they test nothing architecture specific.
#
# Emulation: the normal route is binfmt_misc (qemu-user-static registers qemu-aarch64 with the
# F flag, so arm64 programs run inside the chroot with no emulator in the root).  If binfmt_misc
# cannot be mounted or written (some containers), a plain "chroot ROOT qemu-aarch64-static
# /bin/sh" is not enough -- every exec() a shell, dpkg or pip makes would fail with "Exec format
# error" -- so the script then uses PRoot (`proot -q qemu-aarch64-static`), which intercepts
# exec() and routes every arm64 program through the emulator.  That route is slower still.
set -euo pipefail

suite=bookworm
cache=/var/tmp/snisd-arm64
ref=HEAD
worktree=no
tests="tests/test_rangecoder.py tests/test_codec.py tests/test_model.py tests/container tests/test_native_core.py"
cpu=cortex-a72
frames=4
run_tests=yes
shell=no
mirror=${MIRROR:-http://deb.debian.org/debian}

# Every mount this script makes (the root's /proc, /sys, /dev and the emulated core's cpuinfo over
# the root's /proc/cpuinfo) stays in a private mount namespace: a run once left that cpuinfo bound
# over the host's own /proc/cpuinfo, where it broke programs that read it (Chromium refused to start).
if [ "$(id -u)" -eq 0 ] && [ -z "${SNISD_ARM64_PRIVATE_NS:-}" ] && command -v unshare >/dev/null; then
    export SNISD_ARM64_PRIVATE_NS=1
    exec unshare --mount --propagation private "$0" "$@"
fi
while [ $# -gt 0 ]; do
    case "$1" in
        --suite) suite=$2; shift ;;
        --root) cache=$2; shift ;;
        --ref) ref=$2; shift ;;
        --worktree) worktree=yes ;;
        --tests) tests=$2; shift ;;
        --cpu) cpu=$2; shift ;;
        --frames) frames=$2; shift ;;
        --no-tests) run_tests=no ;;
        --shell) shell=yes ;;
        -h|--help) sed -n '2,40p' "$0"; exit 0 ;;
        *) echo "arm64_check.sh: unknown option $1" >&2; exit 2 ;;
    esac
    shift
done
case "$suite" in
    bookworm|trixie) ;;
    *) echo "arm64_check.sh: suite must be bookworm or trixie" >&2; exit 2 ;;
esac
if [ "$(id -u)" -ne 0 ]; then
    echo "arm64_check.sh: debootstrap and chroot need root (sudo)" >&2
    exit 1
fi

repo=$(cd "$(dirname "$0")/.." && pwd)
root=$cache/$suite
report=$cache/last-result-$suite.txt
mkdir -p "$cache"
: >"$report.tmp"
export QEMU_CPU=$cpu
export LC_ALL=C.UTF-8 DEBIAN_FRONTEND=noninteractive

say() { echo "$*" | tee -a "$report.tmp"; }
now() { date +%s; }
fmt() { printf '%dm%02ds' $(($1 / 60)) $(($1 % 60)); }

# ---------------------------------------------------------------- host prerequisites
need=()
command -v debootstrap >/dev/null || need+=(debootstrap)
[ -x /usr/bin/qemu-aarch64-static ] || need+=(qemu-user-static)
command -v update-binfmts >/dev/null || need+=(binfmt-support)
if [ ${#need[@]} -gt 0 ]; then
    echo "installing on the host: ${need[*]}"
    apt-get install -y "${need[@]}" >/dev/null
fi

# ---------------------------------------------------------------- binfmt_misc or PRoot
binfmt=no
if [ ! -e /proc/sys/fs/binfmt_misc/status ]; then
    mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc 2>/dev/null || true
fi
if [ -e /proc/sys/fs/binfmt_misc/status ]; then
    [ -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ] || update-binfmts --enable qemu-aarch64 2>/dev/null || true
    if grep -qx enabled /proc/sys/fs/binfmt_misc/qemu-aarch64 2>/dev/null \
        && grep -q '^flags:.*F' /proc/sys/fs/binfmt_misc/qemu-aarch64; then
        binfmt=yes
    fi
fi
if [ $binfmt = no ]; then
    command -v proot >/dev/null || apt-get install -y proot >/dev/null
    echo "binfmt_misc is not usable here: running arm64 programs through proot -q qemu-aarch64-static"
fi

mounted=()
cleanup() {
    local m
    for ((i = ${#mounted[@]} - 1; i >= 0; i--)); do
        m=${mounted[i]}
        umount -l "$m" 2>/dev/null || true
    done
}
trap cleanup EXIT

# qemu-user (7.2) shows arm64 programs the host's /proc/cpuinfo, an x86 one.  LiteRT's CPU
# detection (builtin kernels and XNNPACK alike) crashes on it with SIGSEGV in allocate_tensors();
# with an ARM cpuinfo it runs.  So the root gets a cpuinfo of the emulated core bound over
# /proc/cpuinfo.  A board has a real one; this is an artefact of the emulation, not of aarch64.
fake_cpuinfo() {
    local part features i
    case "$cpu" in
        cortex-a53) part=0xd03; features="fp asimd evtstrm crc32 cpuid" ;;
        cortex-a76) part=0xd0b; features="fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp" ;;
        *) part=0xd08; features="fp asimd evtstrm crc32 cpuid" ;;  # cortex-a72, and the default
    esac
    for ((i = 0; i < $(nproc); i++)); do
        printf 'processor\t: %d\nBogoMIPS\t: 108.00\nFeatures\t: %s\nCPU implementer\t: 0x41\n' "$i" "$features"
        printf 'CPU architecture: 8\nCPU variant\t: 0x0\nCPU part\t: %s\nCPU revision\t: 3\n\n' "$part"
    done
}

mount_root() {
    [ $binfmt = yes ] || return 0
    local d
    for d in proc sys dev dev/pts; do
        if ! mountpoint -q "$root/$d"; then
            mkdir -p "$root/$d"
            case $d in
                proc) mount -t proc proc "$root/proc" ;;
                sys) mount -t sysfs sys "$root/sys" ;;
                *) mount --bind "/$d" "$root/$d" ;;
            esac
            mounted+=("$root/$d")
        fi
    done
    if ! mountpoint -q "$root/proc/cpuinfo"; then
        fake_cpuinfo >"$cache/cpuinfo-$cpu"
        mount --bind "$cache/cpuinfo-$cpu" "$root/proc/cpuinfo"
        mounted+=("$root/proc/cpuinfo")
    fi
}

# run a command (as a bash -c string) in the arm64 root
in_root() {
    if [ $binfmt = yes ]; then
        chroot "$root" /usr/bin/env -i HOME=/root PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin \
            LC_ALL=C.UTF-8 QEMU_CPU="$QEMU_CPU" DEBIAN_FRONTEND=noninteractive TERM=dumb \
            PIP_CERT=/etc/ssl/certs/ca-certificates.crt SYSTEMD_OFFLINE=1 \
            /bin/bash -c "$1"
    else
        [ -e "$cache/cpuinfo-$cpu" ] || fake_cpuinfo >"$cache/cpuinfo-$cpu"
        proot -q "qemu-aarch64-static -cpu $QEMU_CPU" -0 -r "$root" -b /proc -b /sys -b /dev \
            -b "$cache/cpuinfo-$cpu:/proc/cpuinfo" -w /root \
            /usr/bin/env -i HOME=/root PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin \
            LC_ALL=C.UTF-8 DEBIAN_FRONTEND=noninteractive TERM=dumb PIP_CERT=/etc/ssl/certs/ca-certificates.crt \
            SYSTEMD_OFFLINE=1 /bin/bash -c "$1"
    fi
}

t_all=$(now)
say "== snisd arm64 check: $(date -u '+%Y-%m-%d %H:%M UTC'), suite $suite, QEMU_CPU=$cpu, $( [ $binfmt = yes ] && echo binfmt_misc || echo proot )"
say "   host: $(uname -srm), $(qemu-aarch64-static --version | head -1)"

# ---------------------------------------------------------------- 1. the root (cached)
t=$(now)
if [ ! -e "$root/.snisd-stage2" ]; then
    if [ ! -e "$root/.snisd-stage1" ]; then
        rm -rf "$root"
        mkdir -p "$root"
        debootstrap --arch=arm64 --foreign --variant=minbase \
            --include=ca-certificates "$suite" "$root" "$mirror"
        touch "$root/.snisd-stage1"
    fi
    # harmless with binfmt's F flag, needed by anything that looks for the emulator in the root
    install -m 0755 /usr/bin/qemu-aarch64-static "$root/usr/bin/qemu-aarch64-static"
    mount_root
    in_root "/debootstrap/debootstrap --second-stage"
    touch "$root/.snisd-stage2"
fi
install -m 0755 /usr/bin/qemu-aarch64-static "$root/usr/bin/qemu-aarch64-static"
cp /etc/resolv.conf "$root/etc/resolv.conf"
mount_root
# Certificate authorities the host's administrator added (a TLS-inspecting proxy, say): the root
# trusts what the host trusts, or apt over https and pip would fail there and not on the host.
if ls /usr/local/share/ca-certificates/*.crt >/dev/null 2>&1 \
    && ! diff -rq /usr/local/share/ca-certificates "$root/usr/local/share/ca-certificates" >/dev/null 2>&1; then
    mkdir -p "$root/usr/local/share/ca-certificates"
    cp /usr/local/share/ca-certificates/*.crt "$root/usr/local/share/ca-certificates/"
    need_ca_update=yes
else
    need_ca_update=no
fi
say "   root: $root ($(du -sh --exclude=proc --exclude=sys --exclude=dev "$root" 2>/dev/null | cut -f1)), debootstrap $(fmt $(($(now) - t)))"

# The board's packages (docs/BOARD.md): build-essential and python3-dev (pip builds the native
# core with the system compiler), python3-venv; systemd for the unit and `systemctl enable`.
# Marker per package list, so a changed list re-runs apt.
pkgs="python3 python3-venv python3-dev build-essential systemd"
t=$(now)
if [ "$(cat "$root/.snisd-apt" 2>/dev/null)" != "$pkgs" ]; then
    in_root "apt-get update -q && apt-get install -y -q --no-install-recommends $pkgs" >/dev/null
    echo "$pkgs" >"$root/.snisd-apt"
fi
if [ $need_ca_update = yes ]; then
    in_root "update-ca-certificates" >/dev/null
fi
say "   apt ($pkgs): $(fmt $(($(now) - t)))"

# ---------------------------------------------------------------- 2. the source
src=$root/root/snisd-src
rm -rf "$src"
mkdir -p "$src"
if [ $worktree = yes ]; then
    (cd "$repo" && git ls-files -z --cached --others --exclude-standard \
        | xargs -0 -I{} sh -c '[ -e "{}" ] && printf "%s\0" "{}"' \
        | tar --null -T - -cf -) | tar -xf - -C "$src"
    label="working tree of $(git -C "$repo" rev-parse --short HEAD)"
else
    git -C "$repo" archive "$ref" | tar -xf - -C "$src"
    label="$ref = $(git -C "$repo" rev-parse --short "$ref")"
fi
say "   source: $label"
for f in models/snis896.tflite models/snis896_synthesis.npz; do
    [ -e "$src/$f" ] || say "   WARNING: $f is not in the exported tree (the round trip and tests/test_model.py will fail)"
done

# ---------------------------------------------------------------- 3. install as on the board
# docs/BOARD.md: tools/install_board.sh does `python3 -m venv --system-site-packages /opt/snisd`
# + `pip install` of the checkout + the config and the unit.  --no-start: no systemd runs in a
# chroot.  SYSTEMD_OFFLINE=1 (set by in_root) lets systemctl enable the unit from its files and
# skip daemon-reload; systemctl's own chroot detection fails when the host's PID 1 is not systemd.
status=PASS
fail() { status=FAIL; say "   FAIL: $*"; }

t=$(now)
if in_root "rm -rf /opt/snisd && cd /root/snisd-src && PIP_CACHE_DIR=/var/cache/pip tools/install_board.sh --no-start" \
    >"$cache/install-$suite.log" 2>&1; then
    say "   install (tools/install_board.sh --no-start): ok, $(fmt $(($(now) - t)))"
else
    fail "install, see $cache/install-$suite.log"
    tail -20 "$cache/install-$suite.log" | tee -a "$report.tmp"
fi
if [ $status = PASS ]; then
    in_root "systemctl is-enabled snisd.service; getent group video; \
        systemd-analyze verify /etc/systemd/system/snisd.service 2>&1 | grep -v 'Failed to \|^$' || true" \
        2>&1 | sed 's/^/   unit: /' | tee -a "$report.tmp" || true
fi

# versions (the virtualenv's python)
py=/opt/snisd/bin/python
versions=$(in_root "$py - <<'EOF'
import platform, importlib.metadata as md
print('python', platform.python_version(), platform.machine())
for p in ('numpy', 'ai-edge-litert', 'av', 'pyyaml', 'aiortc', 'aiohttp', 'snisd'):
    try:
        print(p, md.version(p))
    except md.PackageNotFoundError:
        print(p, 'missing')
import snisd.codec._native as native
print('native-core', native.SIMD)
EOF" 2>&1) || fail "cannot run the virtualenv's python (or import the native core)"
say "   versions: $(echo "$versions" | paste -sd ' ' | sed 's/ \([a-z-]*\) / \1=/g; s/^python /python=/')"

# ---------------------------------------------------------------- 4. tests and round trip
if [ $run_tests = yes ] && [ $status = PASS ]; then
    t=$(now)
    in_root "$py -m pip install -q pytest hypothesis" >>"$cache/install-$suite.log" 2>&1 \
        || fail "pip install pytest hypothesis"
    # `pytest`, not `python -m pytest`: the tests run against the installed package, as on a board
    testcmd="cd /root/snisd-src && /opt/snisd/bin/pytest -q -p no:cacheprovider --durations=8 $tests"
    if in_root "$testcmd" >"$cache/tests-$suite.log" 2>&1; then
        say "   tests ($tests): $(tail -1 "$cache/tests-$suite.log"), $(fmt $(($(now) - t)))"
    else
        fail "tests ($tests): $(tail -1 "$cache/tests-$suite.log"), $(fmt $(($(now) - t))); log $cache/tests-$suite.log"
        grep -E '^(FAILED|ERROR)' "$cache/tests-$suite.log" | head -20 | sed 's/^/     /' | tee -a "$report.tmp" || true
    fi

    # round trip with the installed commands
    for pass in first; do
        t=$(now)
        rt="cd /tmp && rm -f x.mp4 x.y4m; snisd encode /root/snisd-src/tests/data/bikes_12f.mp4 -o x.mp4 --frames $frames \
            && snisd decode x.mp4 -o x.y4m && ls -l x.mp4 x.y4m && head -c 80 x.y4m | head -1 \
            && test \$(grep -c FRAME x.y4m) -ge $frames"
        if in_root "$rt" >"$cache/roundtrip-$suite-$pass.log" 2>&1; then
            say "   round trip ($frames frames): ok, $(fmt $(($(now) - t))); $(grep -o 'x.mp4$' -m1 "$cache/roundtrip-$suite-$pass.log" >/dev/null; awk '/x.mp4$/{print "x.mp4 " $5 " bytes"}' "$cache/roundtrip-$suite-$pass.log")"
        else
            fail "round trip ($pass), $(fmt $(($(now) - t))); log $cache/roundtrip-$suite-$pass.log"
            tail -15 "$cache/roundtrip-$suite-$pass.log" | sed 's/^/     /' | tee -a "$report.tmp"
        fi
    done
fi

say "== $status (suite $suite, $(fmt $(($(now) - t_all))) in all)"
mv "$report.tmp" "$report"
if [ $shell = yes ]; then
    in_root "cd /root/snisd-src && exec bash -i" || true
fi
[ $status = PASS ]
