// ResNet's stem max pool fused into the stem conv (CUDA engines, channels-last, after nhwc_layout):
//   y = FusedConv[nhwc](x [N, H, W, 16], w [64, kh, kw, 16], b; Relu or none)
//   p = MaxPool[nhwc](y; kernel 3x3, strides 2, pads 1)
// becomes
//   p = FusedConv[nhwc](x, w, b; kiln.max_pool = [3, 3, 2, 2, 1, 1, 1, 1])
// which kiln's 16-channel tensor-core conv runs with the pool in its epilogue
// (ops/conv/conv_tc16_cuda.h): the conv's rows never leave shared memory. That is the
// space_to_depth_stem form of a 7x7 stride-2 stem over RGB; at ResNet-50 bs256 the conv's 411 MB
// output is never written and the pool's 236 us kernel goes. Fused only where that kernel
// takes the conv at every shape the engine allows: FP16/BF16, stride 1, no padding, no groups,
// no Z, kernels up to 4x4, a static input width giving output rows of at most 128 pixels;
// the conv's output is read by the pool alone (no graph output), and the pool has no Indices
// output, no dilation and floor rounding.
#include <set>
#include <vector>

#include "ops/conv/conv_internal.h"
#include "ops/layout.h"
#include "passes/fusion_util.h"
#include "passes/pass.h"

namespace kiln::passes {

namespace {

constexpr int64_t kMaxOutputRow = 128;  // conv_tc16::applies_pooled

// The stem conv the tensor-core kernel takes (see the file comment).
bool stem_conv(const ir::Node& conv) {
  if (conv.domain != "com.microsoft" || conv.op_type != "FusedConv" || !ops::is_nhwc(conv)) return false;
  if (conv.outputs.size() != 1 || conv.inputs.size() < 2 || conv.inputs.size() > 4) return false;
  if (conv.inputs.size() == 4 && conv.inputs[3]) return false;  // Z
  if (conv.attrs.has(ops::conv::kMaxPoolAttr) || conv.attrs.get_int("kiln.nchw_input", 0) != 0) return false;
  const std::string act = conv.attrs.get_string("activation", "");
  if (!act.empty() && act != "Relu") return false;
  if (conv.attrs.get_int("group", 1) != 1 || !explicit_pads(conv)) return false;
  if (!ints_are(conv, "strides", {1, 1}, true) || !ints_are(conv, "dilations", {1, 1}, true) ||
      !ints_are(conv, "pads", {0, 0, 0, 0}, true))
    return false;
  const ir::Value* x = conv.input(0);
  const ir::Value* w = conv.input(1);
  if (!x || !w || !w->initializer || !x->shape || x->shape->size() != 4) return false;
  if (x->dtype != DataType::kFloat16 && x->dtype != DataType::kBFloat16) return false;
  const Dims& wd = w->initializer->dims();  // OHWI
  if (w->dtype != x->dtype || wd.size() != 4 || wd[0] != 64 || wd[3] != 16 || wd[1] < 1 || wd[1] > 4 || wd[2] < 1 ||
      wd[2] > 4)
    return false;
  const Dim& width = (*x->shape)[2];
  const Dim& channels = (*x->shape)[3];
  if (!width.known() || !channels.known() || channels.value != 16) return false;
  const int64_t ow = width.value - wd[2] + 1;
  if (ow < 1 || ow > kMaxOutputRow) return false;
  const Dim& height = (*x->shape)[1];
  return !height.known() || height.value - wd[1] + 1 >= 1;
}

bool stem_pool(const ir::Node* pool) {
  if (!is_onnx_op(pool, "MaxPool", 1) || !ops::is_nhwc(*pool)) return false;
  if (pool->outputs.size() > 1 && pool->outputs[1]) return false;  // Indices
  return ints_are(*pool, "kernel_shape", {3, 3}, false) && ints_are(*pool, "strides", {2, 2}, false) &&
         ints_are(*pool, "pads", {1, 1, 1, 1}, false) && ints_are(*pool, "dilations", {1, 1}, true) &&
         pool->attrs.get_int("ceil_mode", 0) == 0 && pool->attrs.get_int("storage_order", 0) == 0 &&
         explicit_pads(*pool);
}

}  // namespace

Status fuse_conv_maxpool(ir::Graph& g, PassContext& ctx) {
  const BuilderConfig* cfg = ctx.config;
  if (!cfg || cfg->device() != DeviceType::kCUDA) return Status();
  Removals removed;
  for (auto& n : g.nodes()) {
    ir::Node* conv = n.get();
    if (!stem_conv(*conv)) continue;
    ir::Value* y = conv->outputs[0];
    ir::Node* pool = only_reader(g, y);
    if (!stem_pool(pool) || removed.has(pool)) continue;
    set_fused_names(*conv, fused_names({conv, pool}));
    conv->attrs.set(ops::conv::kMaxPoolAttr, ir::Attribute::from_ints({3, 3, 2, 2, 1, 1, 1, 1}));
    ir::Value* p = pool->outputs[0];
    conv->outputs[0] = p;
    p->producer = conv;
    y->producer = nullptr;
    removed.drop(pool);
  }
  if (const int fused = removed.finish(g)) ctx.stats["fused_conv_maxpool"] += fused;
  return Status();
}

}  // namespace kiln::passes
