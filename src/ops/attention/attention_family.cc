// Registers the attention family: Attention, RotaryEmbedding and the
// recurrent-state ops of modern decoders (SwiGLU, TensorScatter, LinearAttention, ...),
// and kiln's FusedAttention (made by the fuse_attention pass).
#include "ops/op.h"

namespace kiln::ops {

void register_attention_core(OpRegistry& r);
void register_rotary_embedding(OpRegistry& r);
void register_state_ops(OpRegistry& r);
void register_flex_attention(OpRegistry& r);
namespace attn {
void register_fused_attention(OpRegistry& r);
}

void register_attention_ops(OpRegistry& r) {
  register_attention_core(r);
  register_rotary_embedding(r);
  register_state_ops(r);
  register_flex_attention(r);
  attn::register_fused_attention(r);
}

}  // namespace kiln::ops
