// A process group of c10d (PyTorch's distributed engine, in libtorch_cpu) for the
// training's ranks: a TCPStore rendezvous and a Gloo group, and for ranks on GPUs an
// NCCL group (libtorch_cuda) beside it, with the collectives the training needs. Each
// call returns nullptr on success, else a message the caller frees with
// rnnlm_free_error; nothing unwinds into Rust.
#include "tensors.h"
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#include <c10/util/Flags.h>
#ifdef RNNLM_NCCL
#include <c10/cuda/CUDAFunctions.h>
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <exception>
#include <string>
#include <vector>

C10_DECLARE_int(caffe2_log_level);

namespace {
struct Group {
  c10::intrusive_ptr<c10d::Store> store;
  c10::intrusive_ptr<c10d::ProcessGroupGloo> gloo;
  std::chrono::milliseconds timeout;
  // CUDA tensors' collectives, once the ranks train on GPUs (rnnlm_group_use_cuda).
  c10::intrusive_ptr<c10d::Backend> nccl;

  // NCCL for CUDA tensors, Gloo for the CPU's.
  c10d::Backend &backend_for(const at::Tensor &tensor) {
    if (!tensor.is_cuda()) {
      return *gloo;
    }
    if (!nccl) {
      throw std::runtime_error("CUDA tensors, and the ranks have no NCCL group");
    }
    return *nccl;
  }
};

using rnnlm::tensors;

// The store's listening socket, bound to the master's own address (127.0.0.1 stays
// on the loopback), never to every address of the machine.
int listen_on(const std::string &host, uint16_t port) {
  addrinfo hints{};
  hints.ai_family = AF_INET;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo *found = nullptr;
  if (getaddrinfo(host.c_str(), nullptr, &hints, &found) != 0 || found == nullptr) {
    throw std::runtime_error("MASTER_ADDR " + host + " has no IPv4 address");
  }
  sockaddr_in address = *reinterpret_cast<sockaddr_in *>(found->ai_addr);
  freeaddrinfo(found);
  address.sin_port = htons(port);
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) {
    throw std::runtime_error(std::string("cannot open a socket: ") + strerror(errno));
  }
  int on = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on));
  if (bind(fd, reinterpret_cast<sockaddr *>(&address), sizeof(address)) != 0 ||
      listen(fd, 128) != 0) {
    std::string why = strerror(errno);
    close(fd);
    throw std::runtime_error("cannot listen on " + host + ":" + std::to_string(port) + ": " +
                             why);
  }
  return fd;
}

template <typename F> char *guarded(F body) {
  try {
    body();
    return nullptr;
  } catch (const std::exception &e) {
    return strdup(e.what());
  } catch (...) {
    return strdup("c10d failed with an exception that is not a std::exception");
  }
}
}  // namespace

// Joins the group of `size` ranks as `rank`. Rank 0 serves the store on host:port,
// unless torchrun's agent serves it (`agent_store`); the keys of restart `attempt` are
// kept apart, as torch.distributed's env:// rendezvous keeps them.
extern "C" char *rnnlm_group_new(const char *host, uint16_t port, int rank, int size,
                                 int64_t timeout_ms, bool agent_store, const char *attempt,
                                 void **out) {
  return guarded([&] {
    // c10d logs each retry and failure on stderr; the caller reports a failure in one
    // line, so only fatal messages are let through.
    FLAGS_caffe2_log_level = std::max(FLAGS_caffe2_log_level, 3);
    std::chrono::milliseconds timeout(timeout_ms);
    c10d::TCPStoreOptions options;
    options.port = port;
    options.isServer = rank == 0 && !agent_store;
    options.numWorkers = size;
    options.waitWorkers = true;
    options.timeout = timeout;
    if (options.isServer) {
      options.masterListenFd = listen_on(host, port);
    }
    auto tcp = c10::make_intrusive<c10d::TCPStore>(host, options);
    auto store = c10::make_intrusive<c10d::PrefixStore>(
        std::string("/worker/attempt_") + attempt, tcp);
    auto gloo_options = c10d::ProcessGroupGloo::Options::create(timeout);
    gloo_options->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname(host));
    auto gloo = c10::make_intrusive<c10d::ProcessGroupGloo>(store, rank, size, gloo_options);
    *out = new Group{store, gloo, timeout, {}};
  });
}

// Sums each tensor over the ranks, in place: the tensors of each dtype flattened into
// one buffer, one all-reduce per dtype, as DDP's buckets do. Each tensor then reads
// its slice of the summed buffer (`set_`), as DDP's gradient_as_bucket_view does, so
// the sums are not copied back.
extern "C" char *rnnlm_group_all_reduce_sum(void *group, void *const *pointers, int64_t n) {
  return guarded([&] {
    auto list = tensors(pointers, n);
    std::vector<bool> done(list.size(), false);
    for (size_t first = 0; first < list.size(); ++first) {
      if (done[first]) {
        continue;
      }
      std::vector<at::Tensor> same;
      std::vector<size_t> which;
      for (size_t i = first; i < list.size(); ++i) {
        if (!done[i] && list[i].scalar_type() == list[first].scalar_type()) {
          same.push_back(list[i].reshape({-1}));
          which.push_back(i);
          done[i] = true;
        }
      }
      std::vector<at::Tensor> flat{at::cat(same)};
      static_cast<Group *>(group)->backend_for(flat[0]).allreduce(flat)->wait();
      int64_t offset = 0;
      for (size_t k = 0; k < which.size(); ++k) {
        auto &tensor = list[which[k]];
        int64_t count = tensor.numel();
        // The tensor takes the summed slice of the buffer as its storage: no copy back.
        tensor.set_(flat[0].narrow(0, offset, count).view(tensor.sizes()));
        offset += count;
      }
    }
  });
}

namespace {
// A sum begun by rnnlm_group_all_reduce_start: the caller's tensors, the buffer Gloo
// sums them in, and the collective under way.
struct PendingSum {
  std::vector<at::Tensor> tensors;
  at::Tensor flat;
  c10::intrusive_ptr<c10d::Work> work;
  bool finished = false;

  void finish() {
    finished = true;
    work->wait();
    int64_t offset = 0;
    for (auto &tensor : tensors) {
      int64_t count = tensor.numel();
      tensor.set_(flat.narrow(0, offset, count).view(tensor.sizes()));
      offset += count;
    }
  }
};
}  // namespace

// Begins summing tensors of one dtype over the ranks, in one buffer, and returns while
// Gloo's (or NCCL's) threads send it: the caller goes on computing, and
// rnnlm_group_all_reduce_finish waits and points the tensors at their sums.
extern "C" char *rnnlm_group_all_reduce_start(void *group, void *const *pointers, int64_t n,
                                              void **out) {
  return guarded([&] {
    auto list = tensors(pointers, n);
    if (list.empty()) {
      throw std::runtime_error("a sum begun in the background needs a tensor");
    }
    std::vector<at::Tensor> flat_parts;
    for (auto &tensor : list) {
      if (tensor.scalar_type() != list[0].scalar_type()) {
        throw std::runtime_error("a sum begun in the background takes tensors of one dtype");
      }
      flat_parts.push_back(tensor.reshape({-1}));
    }
    auto *pending = new PendingSum{list, at::cat(flat_parts), {}};
    std::vector<at::Tensor> buffer{pending->flat};
    try {
      pending->work = static_cast<Group *>(group)->backend_for(buffer[0]).allreduce(buffer);
    } catch (...) {
      delete pending;
      throw;
    }
    *out = pending;
  });
}

// Waits for a sum begun by rnnlm_group_all_reduce_start and points its tensors at their
// slices of the summed buffer.
extern "C" char *rnnlm_group_all_reduce_finish(void *pending) {
  return guarded([&] { static_cast<PendingSum *>(pending)->finish(); });
}

// Frees a begun sum, first waiting for it if it was never finished: the group's
// threads may still be writing its buffer.
extern "C" void rnnlm_group_pending_free(void *pending) {
  auto *sum = static_cast<PendingSum *>(pending);
  if (!sum->finished) {
    try {
      sum->work->wait();
    } catch (...) {
    }
  }
  delete sum;
}

// Copies `root`'s tensors to every rank, in place.
extern "C" char *rnnlm_group_broadcast(void *group, void *const *pointers, int64_t n,
                                       int root) {
  return guarded([&] {
    auto list = tensors(pointers, n);
    for (auto &tensor : list) {
      std::vector<at::Tensor> one{tensor};
      c10d::BroadcastOptions options;
      options.rootRank = root;
      static_cast<Group *>(group)->backend_for(tensor).broadcast(one, options)->wait();
    }
  });
}

// Adds an NCCL group on the same store for CUDA tensors, this rank on GPU `device`.
// NCCL sets up its communicator at the first collective.
extern "C" char *rnnlm_group_use_cuda(void *group, int device) {
  return guarded([&] {
#ifdef RNNLM_NCCL
    auto *g = static_cast<Group *>(group);
    c10::cuda::set_device(static_cast<c10::DeviceIndex>(device));
    auto options = c10d::ProcessGroupNCCL::Options::create();
    options->timeout = g->timeout;
    g->nccl = c10::make_intrusive<c10d::ProcessGroupNCCL>(
        c10::make_intrusive<c10d::PrefixStore>("nccl", g->store), g->gloo->getRank(),
        g->gloo->getSize(), options);
#else
    (void)group;
    (void)device;
    throw std::runtime_error(
        "this rnnlm was built without NCCL (CUDA's headers were missing at build time: make "
        "nccl-headers, then rebuild); train the ranks with --device cpu");
#endif
  });
}

// Waits until every rank has reached it.
extern "C" char *rnnlm_group_barrier(void *group) {
  return guarded([&] { static_cast<Group *>(group)->gloo->barrier()->wait(); });
}

extern "C" void rnnlm_group_free(void *group) { delete static_cast<Group *>(group); }
