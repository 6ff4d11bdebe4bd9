// What the csrc/ bindings share: tch's tensors, received as at::Tensor pointers.
#pragma once
#include <ATen/core/Tensor.h>
#include <cstdint>
#include <vector>

namespace rnnlm {
// The `n` tensors that `pointers` point to (tch's `Tensor::as_ptr`), as a list.
inline std::vector<at::Tensor> tensors(void *const *pointers, int64_t n) {
  std::vector<at::Tensor> out;
  out.reserve(n);
  for (int64_t i = 0; i < n; ++i) {
    out.push_back(*static_cast<at::Tensor *>(pointers[i]));
  }
  return out;
}
}  // namespace rnnlm
