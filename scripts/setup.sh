# Sourced by the two top-level scripts: installs what the build and tests need,
# only from the package registries, and only when it is missing. Idempotent.
command -v cargo >/dev/null || { echo "error: cargo not found; install Rust with rustup first" >&2; exit 1; }

# libtorch for tch, from the PyPI torch wheel (see ../shared/LIBTORCH.md):
# unpacked into .libtorch/ without Python's import machinery. ~540 MB once.
if [ ! -f .libtorch/torch/lib/libtorch_cpu.so ]; then
  echo "setup: installing libtorch 2.13.0 from PyPI into .libtorch/ (once, ~540 MB)…" >&2
  python3 -m pip install --quiet --no-cache-dir --no-deps --only-binary=:all: --target .libtorch \
    torch==2.13.0 nvidia-cuda-runtime==13.0.96 nvidia-cuda-cupti==13.0.85 >&2
  # The CUDA-only libraries are not needed on CPU machines (keeps 660 MB instead of 1.2 GB).
  rm -f .libtorch/torch/lib/libtorch_cuda.so .libtorch/torch/lib/libtorch_cuda_linalg.so \
        .libtorch/torch/lib/libc10_cuda.so .libtorch/torch/lib/libtorch_nvshmem.so \
        .libtorch/torch/lib/libcaffe2_nvrtc.so .libtorch/torch/lib/libtorch_python.so
fi
