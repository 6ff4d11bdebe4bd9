// One call into ATen's fused Adam kernel for a list of parameters: every tensor is read
// and written once per step, where an unfused Adam makes about eight passes over each
// parameter (and tch has no binding for the fused kernel).
#include "tensors.h"
#include <ATen/ops/_fused_adam.h>
#include <ATen/ops/_fused_adamw.h>
#include <ATen/core/grad_mode.h>
#include <cstring>
#include <exception>
#include <optional>
#include <vector>

namespace {
using rnnlm::tensors;
}  // namespace

// Returns nullptr on success, else a message the caller frees with rnnlm_free_error.
// A positive weight_decay is decoupled (AdamW): the weights shrink by lr * weight_decay,
// apart from the moment estimates.
extern "C" char *rnnlm_fused_adam(void *const *params, void *const *grads, void *const *exp_avgs,
                                  void *const *exp_avg_sqs, void *const *steps, int64_t n,
                                  double lr, double beta1, double beta2, double eps,
                                  double weight_decay, void *grad_scale) {
  try {
    at::NoGradGuard no_grad;
    std::optional<at::Tensor> scale;
    if (grad_scale != nullptr) {
      scale = *static_cast<at::Tensor *>(grad_scale);
    }
    if (weight_decay > 0.0) {
      at::_fused_adamw_(tensors(params, n), tensors(grads, n), tensors(exp_avgs, n),
                        tensors(exp_avg_sqs, n), {}, tensors(steps, n), lr, beta1, beta2,
                        weight_decay, eps, /*amsgrad=*/false, /*maximize=*/false, scale,
                        std::nullopt);
    } else {
      at::_fused_adam_(tensors(params, n), tensors(grads, n), tensors(exp_avgs, n),
                       tensors(exp_avg_sqs, n), {}, tensors(steps, n), lr, beta1, beta2,
                       0.0, eps, /*amsgrad=*/false, /*maximize=*/false, scale, std::nullopt);
    }
    return nullptr;
  } catch (const std::exception &e) {
    return strdup(e.what());
  } catch (...) {
    // Nothing may unwind into Rust.
    return strdup("fused Adam failed with an exception that is not a std::exception");
  }
}

extern "C" void rnnlm_free_error(char *message) { free(message); }
