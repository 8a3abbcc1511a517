// Col2Im (opset 18): scatters-adds sliding blocks [N, C*prod(block), L] back into
// an image [N, C, *image_shape] (the inverse layout of im2col).
#include <string>
#include <vector>

#include "ops/common.h"
#include "ops/spatial/spatial_ops.h"

namespace kiln::ops {
namespace {

struct Col2ImGeometry {
  std::vector<int64_t> image, block, dil, pads, strides, blocks;  // blocks: sliding positions per dim
  int64_t block_size = 1, num_blocks = 1;
};

Result<Col2ImGeometry> col2im_geometry(const ir::Attributes& attrs, const std::vector<int64_t>& image,
                                       const std::vector<int64_t>& block, const ir::Node& node) {
  auto err = [&](const std::string& m) { return Status(ErrorCode::kInvalidModel, "node " + node.describe() + ": " + m); };
  Col2ImGeometry g;
  size_t nd = image.size();
  if (nd == 0) return err("image_shape must not be empty");
  if (block.size() != nd) return err("block_shape and image_shape must have the same length");
  g.image = image;
  g.block = block;
  g.dil = attrs.get_ints("dilations", std::vector<int64_t>(nd, 1));
  g.pads = attrs.get_ints("pads", std::vector<int64_t>(2 * nd, 0));
  g.strides = attrs.get_ints("strides", std::vector<int64_t>(nd, 1));
  if (g.dil.size() != nd || g.strides.size() != nd || g.pads.size() != 2 * nd)
    return err("dilations/strides need " + std::to_string(nd) + " values and pads " + std::to_string(2 * nd));
  for (size_t i = 0; i < nd; ++i) {
    if (image[i] <= 0 || block[i] <= 0) return err("image_shape and block_shape must be positive");
    if (g.dil[i] <= 0 || g.strides[i] <= 0) return err("dilations and strides must be positive");
    if (g.pads[i] < 0 || g.pads[i + nd] < 0) return err("pads must be non-negative");
    int64_t span = g.dil[i] * (block[i] - 1) + 1;
    int64_t n = image[i] + g.pads[i] + g.pads[i + nd] - span;
    if (n < 0) return err("block does not fit in the padded image along dim " + std::to_string(i));
    g.blocks.push_back(n / g.strides[i] + 1);
    g.block_size *= block[i];
    g.num_blocks *= g.blocks.back();
  }
  return g;
}

Status infer_col2im(InferContext& ctx) {
  KILN_ASSIGN_OR_RETURN(const Shape* in, require_shape(ctx, 0));
  if (in->size() != 3) return ctx.error("input must have rank 3 [N, C*prod(block_shape), L]");
  auto image = input_ints(ctx, 1);
  auto block = input_ints(ctx, 2);
  const Shape* is = ctx.input_shape(1);
  std::optional<size_t> nd;
  if (image) nd = image->size();
  else if (is && is->size() == 1 && (*is)[0].known()) nd = static_cast<size_t>((*is)[0].value);
  if (!nd) {
    ctx.set_output(0, ctx.input_dtype(0), std::nullopt);
    return Status();
  }
  Shape out{(*in)[0], Dim::unknown()};
  if (image && block) {
    KILN_ASSIGN_OR_RETURN(Col2ImGeometry g, col2im_geometry(ctx.attrs(), *image, *block, ctx.node()));
    const Dim& cb = (*in)[1];
    if (cb.known()) {
      if (cb.value % g.block_size != 0)
        return ctx.error("input dim 1 (" + std::to_string(cb.value) + ") is not a multiple of prod(block_shape) " +
                         std::to_string(g.block_size));
      out[1] = Dim(cb.value / g.block_size);
    }
    const Dim& l = (*in)[2];
    if (l.known() && l.value != g.num_blocks)
      return ctx.error("input dim 2 is " + std::to_string(l.value) + " but the geometry gives " +
                       std::to_string(g.num_blocks) + " blocks");
  }
  for (size_t i = 0; i < *nd; ++i) out.push_back(image ? Dim((*image)[i]) : Dim::unknown());
  ctx.set_output(0, ctx.input_dtype(0), out);
  return Status();
}

Status ref_col2im(KernelContext& ctx) {
  const Tensor& x = ctx.input(0);
  Tensor& y = ctx.output(0);
  auto image = ctx.input(1).to_int64_vector();
  auto block = ctx.input(2).to_int64_vector();
  KILN_ASSIGN_OR_RETURN(Col2ImGeometry g, col2im_geometry(ctx.attrs(), image, block, ctx.node()));
  size_t nd = image.size();
  int64_t n = x.dim(0), c = x.dim(1) / g.block_size;
  int64_t img_size = 1;
  for (int64_t v : image) img_size *= v;
  std::vector<double> acc(static_cast<size_t>(img_size));
  std::vector<int64_t> kidx(nd), bidx(nd);
  for (int64_t b = 0; b < n; ++b) {
    for (int64_t ch = 0; ch < c; ++ch) {
      std::fill(acc.begin(), acc.end(), 0.0);
      for (int64_t k = 0; k < g.block_size; ++k) {
        for (int64_t r = k, d = static_cast<int64_t>(nd) - 1; d >= 0; --d) {
          kidx[d] = r % block[d];
          r /= block[d];
        }
        int64_t row = (b * x.dim(1) + ch * g.block_size + k) * g.num_blocks;
        for (int64_t l = 0; l < g.num_blocks; ++l) {
          int64_t off = 0;
          bool inside = true;
          for (int64_t r = l, d = static_cast<int64_t>(nd) - 1; d >= 0; --d) {
            bidx[d] = r % g.blocks[d];
            r /= g.blocks[d];
          }
          for (size_t d = 0; d < nd && inside; ++d) {
            int64_t p = bidx[d] * g.strides[d] - g.pads[d] + kidx[d] * g.dil[d];
            inside = p >= 0 && p < image[d];
            off = off * image[d] + p;
          }
          if (inside) acc[off] += x.get_as_double(row + l);
        }
      }
      int64_t base = (b * c + ch) * img_size;
      for (int64_t i = 0; i < img_size; ++i) y.set_from_double(base + i, acc[i]);
    }
  }
  return Status();
}

}  // namespace

void add_col2im_op(OpRegistry& r) {
  r.add({.name = "Col2Im", .infer = infer_col2im, .ref = ref_col2im, .value_inputs = {1, 2}, .min_opset = 18});
}

}  // namespace kiln::ops
