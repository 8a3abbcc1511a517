// Window functions (Hann, Hamming, Blackman) and MelWeightMatrix; registers
// the signal family (DFT/STFT live in dft.cc).
#include <cmath>
#include <numbers>
#include <string>
#include <vector>

#include "ops/common.h"
#include "ops/signal/signal_util.h"

namespace kiln::ops {
namespace {

Result<DataType> output_datatype(const InferContext& ctx) {
  auto t = static_cast<DataType>(ctx.attrs().get_int("output_datatype", 1));
  if (t == DataType::kString) return ctx.unsupported("output_datatype string is not supported");
  if (!dtype_is_supported(t) || t == DataType::kBool)
    return ctx.error("output_datatype " + std::to_string(static_cast<int>(t)) + " is not a numeric type");
  return t;
}

Result<std::optional<int64_t>> scalar_int_value(const InferContext& ctx, size_t i, const char* what) {
  const Tensor* t = ctx.value(i);
  if (!t) return std::optional<int64_t>();
  if (t->numel() != 1) return ctx.error(std::string(what) + " must be a scalar");
  if (t->dtype() != DataType::kInt32 && t->dtype() != DataType::kInt64)
    return ctx.error(std::string(what) + " must be int32 or int64");
  return std::optional<int64_t>(t->get_as_int64(0));
}

Status infer_window(InferContext& ctx) {
  KILN_ASSIGN_OR_RETURN(DataType t, output_datatype(ctx));
  KILN_ASSIGN_OR_RETURN(auto size, scalar_int_value(ctx, 0, "size"));
  if (size && *size < 0) return ctx.error("size must be non-negative, got " + std::to_string(*size));
  ctx.set_output(0, t, Shape{size ? Dim(*size) : Dim::unknown()});
  return Status();
}

// Generalised cosine window: a0 - a1 cos(2 pi n / N) + a2 cos(4 pi n / N), with
// N = size (periodic) or size - 1 (symmetric).
Status fill_cosine_window(KernelContext& ctx, double a0, double a1, double a2) {
  Tensor& y = ctx.output(0);
  int64_t size = y.numel();
  bool periodic = ctx.attrs().get_int("periodic", 1) != 0;
  double n_1 = static_cast<double>(periodic ? size : size - 1);
  for (int64_t i = 0; i < size; ++i) {
    // A symmetric window of one point would divide by zero; like torch, it is 1.
    if (n_1 == 0) {
      y.set_from_double(i, 1.0);
      continue;
    }
    double a = 2.0 * std::numbers::pi * static_cast<double>(i) / n_1;
    y.set_from_double(i, a0 - a1 * std::cos(a) + a2 * std::cos(2.0 * a));
  }
  return Status();
}

Status ref_hann(KernelContext& ctx) { return fill_cosine_window(ctx, 0.5, 0.5, 0.0); }
Status ref_hamming(KernelContext& ctx) { return fill_cosine_window(ctx, 25.0 / 46.0, 21.0 / 46.0, 0.0); }
Status ref_blackman(KernelContext& ctx) { return fill_cosine_window(ctx, 0.42, 0.5, 0.08); }

// MelWeightMatrix inputs: num_mel_bins, dft_length, sample_rate, lower_edge_hertz, upper_edge_hertz.
Status infer_mel(InferContext& ctx) {
  KILN_ASSIGN_OR_RETURN(DataType t, output_datatype(ctx));
  KILN_ASSIGN_OR_RETURN(auto mel, scalar_int_value(ctx, 0, "num_mel_bins"));
  KILN_ASSIGN_OR_RETURN(auto dft, scalar_int_value(ctx, 1, "dft_length"));
  KILN_ASSIGN_OR_RETURN(auto rate, scalar_int_value(ctx, 2, "sample_rate"));
  if (mel && *mel <= 0) return ctx.error("num_mel_bins must be positive");
  if (dft && *dft <= 0) return ctx.error("dft_length must be positive");
  if (rate && *rate <= 0) return ctx.error("sample_rate must be positive");
  for (size_t i = 3; i < 5; ++i) {
    if (const Tensor* v = ctx.value(i); v && v->numel() != 1) return ctx.error("edge frequencies must be scalars");
  }
  ctx.set_output(0, t, Shape{dft ? Dim(*dft / 2 + 1) : Dim::unknown(), mel ? Dim(*mel) : Dim::unknown()});
  return Status();
}

Status ref_mel(KernelContext& ctx) {
  int64_t mel = ctx.input(0).get_as_int64(0);
  int64_t dft = ctx.input(1).get_as_int64(0);
  double rate = static_cast<double>(ctx.input(2).get_as_int64(0));
  double lo = ctx.input(3).get_as_double(0), hi = ctx.input(4).get_as_double(0);
  int64_t spec_bins = dft / 2 + 1;
  auto hz_to_mel = [](double hz) { return 2595.0 * std::log10(1.0 + hz / 700.0); };
  double lo_mel = hz_to_mel(lo), hi_mel = hz_to_mel(hi);
  // The reference spreads num_mel_bins + 2 edge points over (hi - lo) / (num_mel_bins + 2)
  // steps (so the top edge is not reached); follow it to match its bins.
  double step = (hi_mel - lo_mel) / static_cast<double>(mel + 2);
  std::vector<int64_t> edge(static_cast<size_t>(mel + 2));
  for (int64_t i = 0; i < mel + 2; ++i) {
    double m = lo_mel + static_cast<double>(i) * step;
    double hz = 700.0 * (std::pow(10.0, m / 2595.0) - 1.0);
    double b = std::floor(static_cast<double>(dft + 1) * hz / rate);
    if (!(b >= 0 && b < static_cast<double>(spec_bins)))
      return ctx.error("edge frequencies map outside the " + std::to_string(spec_bins) +
                       " spectrogram bins (check lower/upper_edge_hertz and sample_rate)");
    edge[i] = static_cast<int64_t>(b);
  }
  Tensor& y = ctx.output(0);
  std::vector<double> w(static_cast<size_t>(spec_bins * mel), 0.0);
  for (int64_t i = 0; i < mel; ++i) {
    int64_t l = edge[i], c = edge[i + 1], h = edge[i + 2];
    if (c < l || h < c) return ctx.error("edge frequencies must be increasing");
    if (c == l) w[c * mel + i] = 1.0;
    else
      for (int64_t j = l; j <= c; ++j) w[j * mel + i] = static_cast<double>(j - l) / static_cast<double>(c - l);
    if (h > c)
      for (int64_t j = c; j < h; ++j) w[j * mel + i] = static_cast<double>(h - j) / static_cast<double>(h - c);
  }
  for (int64_t i = 0; i < spec_bins * mel; ++i) y.set_from_double(i, w[i]);
  return Status();
}

}  // namespace

void register_signal_ops(OpRegistry& r) {
  add_dft_ops(r);
  r.add({.name = "HannWindow", .infer = infer_window, .ref = ref_hann, .value_inputs = {0}, .min_opset = 17});
  r.add({.name = "HammingWindow", .infer = infer_window, .ref = ref_hamming, .value_inputs = {0}, .min_opset = 17});
  r.add({.name = "BlackmanWindow", .infer = infer_window, .ref = ref_blackman, .value_inputs = {0}, .min_opset = 17});
  r.add({.name = "MelWeightMatrix", .infer = infer_mel, .ref = ref_mel, .value_inputs = {0, 1, 2}, .min_opset = 17});
}

}  // namespace kiln::ops
