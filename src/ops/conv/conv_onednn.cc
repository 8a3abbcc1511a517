// oneDNN float32 Conv (1-D/2-D/3-D, groups, dilations, any padding, bias).
// kiln's tensors are plain NC[D]HW; oneDNN computes in the layouts it prefers.
#ifdef KILN_HAVE_DNNL
#include <map>
#include <memory>
#include <mutex>

#include "backends/cpu/onednn.h"
#include "ops/conv/conv_internal.h"

namespace kiln::ops::conv {

namespace {

using dnnl::memory;
using tag = memory::format_tag;
using dt = memory::data_type;

// Weights reordered into oneDNN's layout, kept per constant W (an initializer) so
// each run skips the reorder. An entry dies with its initializer.
struct CachedWeights {
  std::weak_ptr<Tensor> owner;
  memory::desc md;
  memory mem;
};

std::mutex g_cache_mu;
std::map<const ir::Value*, CachedWeights> g_cache;

// The reordered weights, from the cache when W is the node's initializer.
memory reordered_weights(const KernelContext& ctx, const Tensor& wt, const memory& w_user,
                         const memory::desc& want, dnnl::engine& eng, dnnl::stream& strm) {
  const ir::Value* wv = ctx.node().input(1);
  const bool constant = wv && wv->initializer && wv->initializer.get() == &wt;
  if (constant) {
    std::lock_guard<std::mutex> lock(g_cache_mu);
    auto it = g_cache.find(wv);
    if (it != g_cache.end() && it->second.owner.lock() == wv->initializer && it->second.md == want)
      return it->second.mem;
  }
  memory w(want, eng);
  dnnl::reorder(w_user, w).execute(strm, const_cast<memory&>(w_user), w);
  strm.wait();
  if (constant) {
    std::lock_guard<std::mutex> lock(g_cache_mu);
    for (auto it = g_cache.begin(); it != g_cache.end();)
      it = it->second.owner.expired() ? g_cache.erase(it) : std::next(it);
    g_cache[wv] = CachedWeights{wv->initializer, want, w};
  }
  return w;
}

tag plain_act(int64_t sp) { return sp == 1 ? tag::ncw : sp == 2 ? tag::nchw : tag::ncdhw; }
tag plain_w(int64_t sp, bool grouped) {
  if (grouped) return sp == 1 ? tag::goiw : sp == 2 ? tag::goihw : tag::goidhw;
  return sp == 1 ? tag::oiw : sp == 2 ? tag::oihw : tag::oidhw;
}

}  // namespace

bool applies_onednn_conv(const ir::Node& node, const std::vector<TensorType>& inputs) {
  if (inputs.size() < 2) return false;
  for (size_t i = 0; i < inputs.size() && i < 3; ++i)
    if (node.input(i) && inputs[i].dtype != DataType::kFloat32) return false;
  const auto& xs = inputs[0].shape;
  return !xs || (xs->size() >= 3 && xs->size() <= 5);
}

Status onednn_conv(KernelContext& ctx) {
  const Tensor& xt = ctx.input(0);
  const Tensor& wt = ctx.input(1);
  const Tensor* bt = ctx.has_input(2) ? &ctx.input(2) : nullptr;
  if (xt.dtype() != DataType::kFloat32 || wt.dtype() != DataType::kFloat32 || (bt && bt->dtype() != DataType::kFloat32))
    return ctx.error("cpu.onednn needs float32");
  auto sr = conv_shape(ctx.attrs(), xt.dims(), wt.dims(), bt ? &bt->dims() : nullptr);
  if (!sr.ok()) return ctx.error(sr.status().message());
  const ConvShape& s = *sr;
  const int64_t sp = s.attrs.spatial;
  if (s.n == 0 || s.m == 0 || s.out_count == 0) return Status();
  if (sp > 3 || s.c == 0 || s.in_count == 0) return cpu_im2col_gemm(ctx);
  try {
    auto& eng = cpu::dnnl_engine();
    auto& strm = cpu::dnnl_stream();
    memory::dims src_dims{s.n, s.c}, dst_dims{s.n, s.m}, w_dims, strides, dil, pl, pr;
    const bool grouped = s.group > 1;
    if (grouped) w_dims = {s.group, s.m / s.group, s.c / s.group};
    else w_dims = {s.m, s.c};
    for (int64_t d = 0; d < sp; ++d) {
      src_dims.push_back(s.geo.in[d]);
      dst_dims.push_back(s.geo.out[d]);
      w_dims.push_back(s.attrs.kernel[d]);
      strides.push_back(s.attrs.strides[d]);
      dil.push_back(s.attrs.dilations[d] - 1);
      pl.push_back(s.geo.pad_begin[d]);
      // The exact trailing pad that yields this output size (may be below the attribute).
      pr.push_back((s.geo.out[d] - 1) * s.attrs.strides[d] + window::window_extent(s.attrs, d) - s.geo.in[d] -
                   s.geo.pad_begin[d]);
    }
    memory::desc src_md(src_dims, dt::f32, plain_act(sp));
    memory::desc dst_md(dst_dims, dt::f32, plain_act(sp));
    memory::desc w_user_md(w_dims, dt::f32, plain_w(sp, grouped));
    memory::desc w_any_md(w_dims, dt::f32, tag::any);
    memory::desc b_md({s.m}, dt::f32, tag::x);
    // `any` lets oneDNN choose blocked layouts (brgconv); reorders in and out cost
    // far less than the plain-layout gemm fallback it would use otherwise.
    memory::desc src_any(src_dims, dt::f32, tag::any);
    memory::desc dst_any(dst_dims, dt::f32, tag::any);
    auto desc = bt ? dnnl::convolution_forward::desc(dnnl::prop_kind::forward_inference,
                                                     dnnl::algorithm::convolution_direct, src_any, w_any_md, b_md,
                                                     dst_any, strides, dil, pl, pr)
                   : dnnl::convolution_forward::desc(dnnl::prop_kind::forward_inference,
                                                     dnnl::algorithm::convolution_direct, src_any, w_any_md, dst_any,
                                                     strides, dil, pl, pr);
    dnnl::convolution_forward::primitive_desc pd(desc, eng);
    memory src(src_md, eng, const_cast<float*>(xt.data_as<float>()));
    memory dst(dst_md, eng, ctx.output(0).data_as<float>());
    memory w_user(w_user_md, eng, const_cast<float*>(wt.data_as<float>()));
    memory w = pd.weights_desc() == w_user_md ? w_user
                                              : reordered_weights(ctx, wt, w_user, pd.weights_desc(), eng, strm);
    memory src2 = src, dst2 = dst;
    if (pd.src_desc() != src_md) {
      src2 = memory(pd.src_desc(), eng);
      dnnl::reorder(src, src2).execute(strm, src, src2);
    }
    if (pd.dst_desc() != dst_md) dst2 = memory(pd.dst_desc(), eng);
    std::unordered_map<int, memory> args{{DNNL_ARG_SRC, src2}, {DNNL_ARG_WEIGHTS, w}, {DNNL_ARG_DST, dst2}};
    if (bt) args.emplace(DNNL_ARG_BIAS, memory(b_md, eng, const_cast<float*>(bt->data_as<float>())));
    dnnl::convolution_forward(pd).execute(strm, args);
    if (pd.dst_desc() != dst_md) dnnl::reorder(dst2, dst).execute(strm, dst2, dst);
    strm.wait();
  } catch (const dnnl::error& e) {
    return cpu::dnnl_status(e, "node " + ctx.node().describe() + ": oneDNN convolution");
  }
  return Status();
}

}  // namespace kiln::ops::conv
#endif
