// Data-parallel training's one collective, over libtorch's own distributed
// backend (c10d): a TCPStore for the rendezvous and a Gloo process group for
// the sums. Called from Rust (train/src/dist.rs).
//
// The PyPI torch wheel has c10d's code (ProcessGroupGloo is in
// libtorch_cpu) and c10d's headers, but not Gloo's headers, which
// ProcessGroupGloo.hpp includes; Debian's libgloo-dev provides them
// (scripts/setup.sh installs it). Without them (`TAILOR_GLOO` undefined) this
// file builds a stub whose every call fails with a message saying so.
//
// Handles are plain pointers owned by the Rust side; C++ exceptions never
// cross: a failing call returns null (or non-zero) and leaves its message for
// `tailor_dist_last_error`.

#include <ATen/ATen.h>

#include <chrono>
#include <string>
#include <vector>

#ifdef TAILOR_GLOO
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#endif

namespace {

thread_local std::string last_error;

#ifdef TAILOR_GLOO
struct Group {
  c10::intrusive_ptr<c10d::TCPStore> store;
  c10::intrusive_ptr<c10d::ProcessGroupGloo> pg;
  std::string host;
};
#else
struct Group {};
#endif

template <typename F>
int guarded(F f) {
  try {
    f();
    return 0;
  } catch (const std::exception& e) {
    last_error = e.what();
    return 1;
  }
}

}  // namespace

extern "C" {

const char* tailor_dist_last_error() { return last_error.c_str(); }

// The rendezvous store: rank 0 serves it (`server` non-zero; port 0 picks a
// free port, see tailor_dist_port), the other ranks connect to host:port.
void* tailor_dist_store(const char* host, int port, int server, int world, int timeout_ms) {
#ifdef TAILOR_GLOO
  Group* g = nullptr;
  int rc = guarded([&] {
    c10d::TCPStoreOptions o;
    o.port = static_cast<std::uint16_t>(port);
    o.isServer = server != 0;
    o.numWorkers = world;
    o.waitWorkers = false;
    o.timeout = std::chrono::milliseconds(timeout_ms);
    auto store = c10::make_intrusive<c10d::TCPStore>(std::string(host), o);
    g = new Group{store, {}, std::string(host)};
  });
  return rc == 0 ? g : nullptr;
#else
  last_error = "this tailor-train was built without Gloo's headers, so `workers:` above 1 cannot run; install libgloo-dev (scripts/setup.sh does) and rebuild";
  return nullptr;
#endif
}

int tailor_dist_port(void* handle) {
#ifdef TAILOR_GLOO
  return static_cast<Group*>(handle)->store->getPort();
#else
  return -1;
#endif
}

// Join the process group as `rank` of `world` (blocks until every rank has
// joined, or the timeout). Collectives time out after `timeout_ms` too, so a
// rank that stops answering fails the others instead of hanging them.
int tailor_dist_join(void* handle, const char* own_host, int rank, int world, int timeout_ms) {
#ifdef TAILOR_GLOO
  auto* g = static_cast<Group*>(handle);
  return guarded([&] {
    auto opts = c10d::ProcessGroupGloo::Options::create(std::chrono::milliseconds(timeout_ms));
    opts->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname(std::string(own_host)));
    opts->threads = 1;
    g->pg = c10::make_intrusive<c10d::ProcessGroupGloo>(g->store, rank, world, opts);
  });
#else
  last_error = "no Gloo in this build";
  return 1;
#endif
}

// Sum n tensors (same dtype and device) across ranks, in place; returns
// when the sums are there. The tensors are copied into flat buckets of at
// most `bucket_bytes` (a tensor larger than that has a bucket to itself),
// one collective each, as DDP's buckets, and copied back: one
// path for every device, since Gloo's coalesced all-reduce takes CPU tensors
// only, while its plain all-reduce also takes CUDA tensors (through pinned
// host memory). The CPU tests thus run the code a CUDA run takes.
int tailor_dist_allreduce(void* handle, at::Tensor** ts, int n, int64_t bucket_bytes) {
#ifdef TAILOR_GLOO
  auto* g = static_cast<Group*>(handle);
  return guarded([&] {
    TORCH_CHECK(g->pg, "the process group was not joined");
    const int64_t cap = bucket_bytes / static_cast<int64_t>(n > 0 ? ts[0]->element_size() : 4);
    int first = 0;
    while (first < n) {
      int last = first;
      int64_t numel = 0;
      while (last < n && (last == first || numel + ts[last]->numel() <= cap)) numel += ts[last++]->numel();
      std::vector<at::Tensor> parts;
      parts.reserve(last - first);
      for (int i = first; i < last; ++i) parts.push_back(ts[i]->reshape({-1}));
      std::vector<at::Tensor> bucket{at::cat(parts)};
      c10d::AllreduceOptions o;
      o.reduceOp = c10d::ReduceOp::SUM;
      g->pg->allreduce(bucket, o)->wait();
      int64_t at = 0;
      for (int i = first; i < last; ++i) {
        const int64_t k = ts[i]->numel();
        ts[i]->copy_(bucket[0].narrow(0, at, k).view(ts[i]->sizes()));
        at += k;
      }
      first = last;
    }
  });
#else
  last_error = "no Gloo in this build";
  return 1;
#endif
}

void tailor_dist_free(void* handle) {
#ifdef TAILOR_GLOO
  try {
    delete static_cast<Group*>(handle);
  } catch (...) {
  }
#endif
}

}  // extern "C"
