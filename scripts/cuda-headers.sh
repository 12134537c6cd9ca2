#!/usr/bin/env bash
# Fetches the CUDA 11.8 headers and link stubs that gorgonia.org/cu compiles
# against, without installing anything and without a GPU: Debian bookworm's
# non-free package nvidia-cuda-dev is downloaded with a private apt source list
# and only usr/include and usr/lib/x86_64-linux-gnu/stubs are unpacked into a
# cache directory. Idempotent: a second run only prints the environment.
#
# Usage:
#   eval "$(bash scripts/cuda-headers.sh)"          # CGO_CFLAGS / CGO_LDFLAGS
#   go vet -tags cuda ./gpu/... && go build -tags cuda ./...
#   eval "$(bash scripts/cuda-headers.sh --nvcc)"   # also NVCC (make ptx)
#
# --nvcc also unpacks nvcc and cicc from nvidia-cuda-toolkit (an 84 MB .deb,
# ~20 s) with an nvcc.profile relative to nvcc's own directory, so PTX can be
# generated without installing the toolkit (the host compiler is the system
# g++ with -allow-unsupported-compiler: CUDA 11.8 predates gcc 12).
#
# The cache lives in $REPLAYD_CUDA_CACHE, else /var/cache/replayd-cuda when
# writable, else $HOME/.cache/replayd-cuda. Progress goes to stderr; stdout is
# only export lines, so the output can be eval'ed. Measured here: 59 s for the
# headers (774 MB download at ~100 MB/s, then xz decompression), 18 s more
# for --nvcc.
set -euo pipefail

want_nvcc=0
[[ ${1:-} == --nvcc ]] && want_nvcc=1

log() { echo "cuda-headers: $*" >&2; }

cache=${REPLAYD_CUDA_CACHE:-}
if [[ -z $cache ]]; then
	if mkdir -p /var/cache/replayd-cuda 2>/dev/null && [[ -w /var/cache/replayd-cuda ]]; then
		cache=/var/cache/replayd-cuda
	else
		cache=$HOME/.cache/replayd-cuda
	fi
fi
root=$cache/root
inc=$root/usr/include
stubs=$root/usr/lib/x86_64-linux-gnu/stubs
tk=$root/usr/lib/nvidia-cuda-toolkit
nvcc=$tk/bin/nvcc

emit() {
	# cu's cgo directives name -lcuda; the stub satisfies the linker and the
	# driver's real libcuda.so.1 is loaded at run time.
	echo "export CGO_CFLAGS=\"-I$inc\""
	echo "export CGO_LDFLAGS=\"-L$stubs\""
	echo "export REPLAYD_CUDA_ROOT=\"$root\""
	if ((want_nvcc)); then
		echo "export NVCC=\"$nvcc\""
	fi
}

have_headers() { [[ -f $cache/.done && -f $inc/cuda.h && -f $stubs/libcuda.so ]]; }
have_nvcc() { [[ -f $cache/.nvcc-done && -x $nvcc ]]; }

if have_headers && { ((!want_nvcc)) || have_nvcc; }; then
	emit
	exit 0
fi

start=$(date +%s)
mkdir -p "$cache"
work=$(mktemp -d "$cache/tmp.XXXXXX")
[[ -n $work && -d $work ]] || { log "cannot make a temp dir in $cache"; exit 1; }
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/lists/partial" "$work/debs"

# The private source list: the bookworm mirror with contrib and non-free,
# used only for this download (the system's apt state is not touched: the
# lists go to the temp directory and nothing is installed).
mirror=${REPLAYD_DEBIAN_MIRROR:-http://deb.debian.org/debian}
printf 'deb %s bookworm main contrib non-free\ndeb %s bookworm-updates main contrib non-free\n' \
	"$mirror" "$mirror" >"$work/sources.list"
aptopts=(
	-o "Dir::Etc::SourceList=$work/sources.list"
	-o "Dir::Etc::SourceParts=/dev/null"
	-o "Dir::State::Lists=$work/lists"
	-o "Dir::Cache::pkgcache="
	-o "Dir::Cache::srcpkgcache="
	-o "Debug::NoLocking=1"
	-o "APT::Sandbox::User=root"
)
log "apt-get update (private source list: bookworm main contrib non-free)"
apt-get "${aptopts[@]}" update -qq >&2

# fetch PKG PATTERN...: downloads PKG and unpacks only the paths matching
# the tar patterns into $work/x-PKG (these packages are mostly static
# libraries and tools we never use).
fetch() {
	local pkg=$1 deb
	shift
	log "downloading $pkg $(apt-cache "${aptopts[@]}" policy "$pkg" | awk '/Candidate/ {print $2}')"
	(cd "$work/debs" && apt-get "${aptopts[@]}" download "$pkg" >&2)
	deb=$(ls "$work"/debs/"$pkg"_*.deb)
	log "unpacking $* from $(basename "$deb") ($(du -h "$deb" | cut -f1))"
	mkdir -p "$work/x-$pkg"
	dpkg-deb --fsys-tarfile "$deb" | tar -x -C "$work/x-$pkg" --wildcards "$@"
	rm -f "$deb"
}

if ! have_headers; then
	# nvidia-cuda-dev carries cuda.h and the stubs (bookworm ships CUDA 11.8:
	# 11.8.89~11.8.0-5~deb12u1 when this was written).
	fetch nvidia-cuda-dev './usr/include/*' './usr/lib/x86_64-linux-gnu/stubs/*'
	rm -rf "$root" "$cache/.nvcc-done"
	mv "$work/x-nvidia-cuda-dev" "$root"
	if [[ ! -f $inc/cuda.h || ! -f $stubs/libcuda.so ]]; then
		log "cuda.h or libcuda.so stub missing after unpack"
		exit 1
	fi
	touch "$cache/.done"
fi

if ((want_nvcc)) && ! have_nvcc; then
	fetch nvidia-cuda-toolkit './usr/lib/nvidia-cuda-toolkit/*'
	rm -rf "$tk"
	mv "$work/x-nvidia-cuda-toolkit/usr/lib/nvidia-cuda-toolkit" "$tk"
	# Debian's profile is a link to /etc/nvcc.profile with absolute paths;
	# this one is relative to nvcc's directory and adds our headers.
	rm -f "$tk/bin/nvcc.profile"
	printf '%s\n' \
		'NVVMIR_LIBRARY_DIR = $(_HERE_)/../libdevice' \
		'PATH += $(_HERE_):' \
		'INCLUDES += "-I$(_HERE_)/../../../include" $(_SPACE_)' >"$tk/bin/nvcc.profile"
	touch "$cache/.nvcc-done"
fi
log "done in $(($(date +%s) - start)) s, cache $cache"
emit
