#include "harness/op_harness.h"

namespace kiln::test {
namespace {

ir::Attribute eq(const char* s) { return ir::Attribute::from_string(s); }

TEST(Einsum, MatmulTransposeAndImplicitOutput) {
  for (const char* e : {"ij,jk->ik", "ij,jk", "ij, jk -> ik"}) {
    OpCase c("Einsum", 12);
    c.attr("equation", eq(e));
    c.input(DataType::kFloat32, {3, 4}).input(DataType::kFloat32, {4, 5});
    auto out = c.run();
    ASSERT_TRUE(out.ok()) << e << ": " << out.status().to_string();
    const Tensor& a = *c.inputs()[0];
    const Tensor& b = *c.inputs()[1];
    ASSERT_EQ((*out)[0].dims(), (Dims{3, 5}));
    for (int64_t i = 0; i < 3; ++i)
      for (int64_t k = 0; k < 5; ++k) {
        double s = 0;
        for (int64_t j = 0; j < 4; ++j) s += a.get_as_double(i * 4 + j) * b.get_as_double(j * 5 + k);
        EXPECT_NEAR((*out)[0].get_as_double(i * 5 + k), s, 1e-5);
      }
  }
  OpCase t("Einsum", 12);
  t.attr("equation", eq("ij->ji"));
  t.input(DataType::kInt64, {2, 3}, -9, 9);
  auto to = t.run();
  ASSERT_TRUE(to.ok());
  for (int64_t i = 0; i < 2; ++i)
    for (int64_t j = 0; j < 3; ++j) EXPECT_EQ((*to)[0].get_as_int64(j * 2 + i), t.inputs()[0]->get_as_int64(i * 3 + j));
  // Implicit output sorts labels alphabetically: "ba" gives the transpose.
  OpCase im("Einsum", 12);
  im.attr("equation", eq("ba"));
  im.input(DataType::kFloat32, {2, 3});
  auto io = im.run();
  ASSERT_TRUE(io.ok());
  EXPECT_EQ((*io)[0].dims(), (Dims{3, 2}));
}

TEST(Einsum, DiagonalTraceAndEllipsisBroadcast) {
  OpCase d("Einsum", 12);
  d.attr("equation", eq("...ii->...i"));
  d.input(DataType::kFloat64, {2, 4, 4});
  auto dout = d.run();
  ASSERT_TRUE(dout.ok()) << dout.status().to_string();
  ASSERT_EQ((*dout)[0].dims(), (Dims{2, 4}));
  for (int64_t b = 0; b < 2; ++b)
    for (int64_t i = 0; i < 4; ++i)
      EXPECT_EQ((*dout)[0].get_as_double(b * 4 + i), d.inputs()[0]->get_as_double(b * 16 + i * 5));
  OpCase tr("Einsum", 12);
  tr.attr("equation", eq("ii"));
  tr.input(DataType::kFloat64, {5, 5});
  auto tro = tr.run();
  ASSERT_TRUE(tro.ok());
  double trace = 0;
  for (int64_t i = 0; i < 5; ++i) trace += tr.inputs()[0]->get_as_double(i * 6);
  EXPECT_EQ((*tro)[0].rank(), 0);
  EXPECT_NEAR((*tro)[0].get_as_double(0), trace, 1e-12);

  OpCase e("Einsum", 12);
  e.attr("equation", eq("...ij,...jk->...ik"));
  e.input(DataType::kFloat32, {2, 1, 3, 4}).input(DataType::kFloat32, {5, 4, 2});
  auto eo = e.run();
  ASSERT_TRUE(eo.ok()) << eo.status().to_string();
  ASSERT_EQ((*eo)[0].dims(), (Dims{2, 5, 3, 2}));
  const Tensor& a = *e.inputs()[0];
  const Tensor& b = *e.inputs()[1];
  for (int64_t p = 0; p < 2; ++p)
    for (int64_t q = 0; q < 5; ++q)
      for (int64_t i = 0; i < 3; ++i)
        for (int64_t k = 0; k < 2; ++k) {
          double s = 0;
          for (int64_t j = 0; j < 4; ++j)
            s += a.get_as_double((p * 3 + i) * 4 + j) * b.get_as_double((q * 4 + j) * 2 + k);
          EXPECT_NEAR((*eo)[0].get_as_double(((p * 5 + q) * 3 + i) * 2 + k), s, 1e-5);
        }
}

TEST(Einsum, ThreeOperandsAndOuterProduct) {
  OpCase c("Einsum", 12);
  c.attr("equation", eq("ij,jk,kl->il"));
  c.input(DataType::kFloat64, {2, 3}).input(DataType::kFloat64, {3, 4}).input(DataType::kFloat64, {4, 2});
  auto out = c.run();
  ASSERT_TRUE(out.ok()) << out.status().to_string();
  const Tensor &a = *c.inputs()[0], &b = *c.inputs()[1], &d = *c.inputs()[2];
  for (int64_t i = 0; i < 2; ++i)
    for (int64_t l = 0; l < 2; ++l) {
      double s = 0;
      for (int64_t j = 0; j < 3; ++j)
        for (int64_t k = 0; k < 4; ++k)
          s += a.get_as_double(i * 3 + j) * b.get_as_double(j * 4 + k) * d.get_as_double(k * 2 + l);
      EXPECT_NEAR((*out)[0].get_as_double(i * 2 + l), s, 1e-12);
    }
  OpCase o("Einsum", 12);
  o.attr("equation", eq("i,j->ij"));
  o.input(DataType::kInt32, {3}, -5, 5).input(DataType::kInt32, {2}, -5, 5);
  auto oo = o.run();
  ASSERT_TRUE(oo.ok());
  for (int64_t i = 0; i < 3; ++i)
    for (int64_t j = 0; j < 2; ++j)
      EXPECT_EQ((*oo)[0].get_as_int64(i * 2 + j), o.inputs()[0]->get_as_int64(i) * o.inputs()[1]->get_as_int64(j));
}

TEST(Einsum, GemmFastKernelMatchesReference) {
  struct C {
    const char* eq;
    Dims a, b;
  };
  for (C c : {C{"bhqd,bhkd->bhqk", {2, 3, 5, 8}, {2, 3, 7, 8}}, C{"ij,jk->ki", {4, 6}, {6, 5}}, C{"i,i", {9}, {9}},
              C{"ab,b->a", {4, 3}, {3}}, C{"ab,ba->", {3, 4}, {4, 3}}, C{"...ij,...jk->...ik", {2, 3, 4}, {2, 4, 5}},
              C{"...ij,...jk->...ik", {1, 3, 4}, {2, 4, 5}}, C{"ij,ij->ij", {3, 4}, {3, 4}},
              C{"ij,kj->", {3, 4}, {2, 4}}, C{"ii,ij->j", {3, 3}, {3, 2}}, C{"bij,bjk", {2, 0, 3}, {2, 3, 4}}}) {
    OpCase o("Einsum", 12);
    o.attr("equation", eq(c.eq));
    o.input(DataType::kFloat32, c.a).input(DataType::kFloat32, c.b);
    EXPECT_EQ(o.expect_all_kernels_match(1e-5, 1e-5), 1 + gpu_kernels()) << c.eq;  // cpu.gemm (+ cuda.einsum)
  }
}

TEST(Einsum, SymbolicInferenceAndErrors) {
  OpCase c("Einsum", 12);
  c.attr("equation", eq("bij,bjk->bik"));
  c.input(DataType::kFloat32, {2, 3, 4}).input(DataType::kFloat32, {2, 4, 5});
  ops::TensorType a{DataType::kFloat32, Shape{Dim::symbol("B"), Dim::symbol("M"), Dim(4)}};
  ops::TensorType b{DataType::kFloat32, Shape{Dim::symbol("B"), Dim(4), Dim(5)}};
  auto r = ops::infer_node(c.node(), {a, b}, {nullptr, nullptr});
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  EXPECT_EQ(shape_to_string(*(*r)[0].shape), "[B,M,5]");

  struct Bad {
    const char* eq;
    Dims a, b;
  };
  for (Bad bad : {Bad{"ij->ik", {2, 3}, {}}, Bad{"ij,jk->ik", {2, 3}, {4, 5}}, Bad{"i#->i", {2, 3}, {}},
                  Bad{"ijk->i", {2, 3}, {}}, Bad{"ij,jk,kl->il", {2, 3}, {3, 4}}, Bad{"...i->i", {2, 3}, {}},
                  Bad{"i..j..->i", {2, 3}, {}}}) {
    OpCase e("Einsum", 12);
    e.attr("equation", eq(bad.eq));
    e.input(DataType::kFloat32, bad.a);
    if (!bad.b.empty()) e.input(DataType::kFloat32, bad.b);
    auto out = e.run();
    EXPECT_FALSE(out.ok()) << bad.eq;
  }
}

// The CUDA kernel's batched-GEMM path: two operands, distinct labels, no
// broadcasting, every summed label in both (tiles of 32 x 32, K chunks of 16).
struct EinsumCase {
  const char* name;
  const char* eq;
  std::vector<Dims> shapes;
};

void expect_einsum_kernels_match(const EinsumCase& c, DataType dt, double rtol, double atol) {
  OpCase o("Einsum", 12);
  o.attr("equation", eq(c.eq));
  const bool ints = dt == DataType::kInt32 || dt == DataType::kInt64;
  for (const Dims& d : c.shapes) o.input(dt, d, ints ? -4 : -1, ints ? 4 : 1);
  // cpu.gemm always applies; cuda.einsum too when a GPU is present.
  EXPECT_EQ(o.expect_all_kernels_match(rtol, atol), 1 + gpu_kernels()) << c.name << " " << dtype_name(dt);
}

const Tol kEinsumTols[] = {
    {DataType::kFloat32, 1e-4, 1e-5}, {DataType::kFloat16, 1e-2, 1e-2}, {DataType::kBFloat16, 2e-2, 2e-2}};

TEST(Einsum, CudaGemmPathMatchesReference) {
  const EinsumCase cases[] = {
      {"matmul_odd_sizes_multi_tile", "ij,jk->ik", {{37, 19}, {19, 45}}},
      {"batched_matmul", "bij,bjk->bik", {{3, 33, 17}, {3, 17, 5}}},
      {"attention_scores_transposed_b", "bhqd,bhkd->bhqk", {{2, 3, 7, 40}, {2, 3, 9, 40}}},
      {"attention_context", "bhqk,bhkd->bqhd", {{2, 3, 7, 9}, {2, 3, 9, 40}}},
      {"permuted_output", "ij,jk->ki", {{5, 6}, {6, 35}}},
      {"m_group_of_two_labels", "abc,cd->abd", {{3, 11, 18}, {18, 7}}},
      {"k_group_of_two_labels", "ijk,jkl->il", {{4, 5, 6}, {5, 6, 3}}},
      {"outer_product_empty_k", "i,j->ij", {{33}, {34}}},
      {"dot_product_scalar_output", "i,i", {{70}, {70}}},
      {"ellipsis_batch", "...ij,...jk->...ik", {{2, 3, 4, 5}, {2, 3, 5, 6}}},
      {"implicit_output", "ij,jk", {{4, 6}, {6, 3}}},
      {"empty_k_gives_zeros", "ij,jk->ik", {{3, 0}, {0, 4}}},
      {"empty_output", "ij,jk->ik", {{0, 5}, {5, 4}}},
  };
  for (const EinsumCase& c : cases)
    for (const Tol& t : kEinsumTols) expect_einsum_kernels_match(c, t.dtype, t.rtol, t.atol);
}

// The general path: one thread per output element summing over the other labels.
TEST(Einsum, CudaGeneralPathMatchesReference) {
  const EinsumCase cases[] = {
      {"diagonal", "ii->i", {{7, 7}}},
      {"trace", "ii", {{9, 9}}},
      {"batched_diagonal", "...ii->...i", {{2, 5, 5}}},
      {"transpose_one_operand", "ijk->kji", {{3, 4, 5}}},
      {"sum_one_operand", "ij->i", {{6, 33}}},
      {"one_sided_sum", "ij,jk->i", {{4, 5}, {5, 3}}},
      {"broadcast_ellipsis", "...ij,...jk->...ik", {{2, 1, 3, 4}, {5, 4, 2}}},
      {"broadcast_size_one_label", "bij,bjk->bik", {{1, 3, 4}, {3, 4, 2}}},
      {"three_operands", "ij,jk,kl->il", {{3, 4}, {4, 5}, {5, 2}}},
      {"diagonal_times_matrix", "ii,ij->j", {{3, 3}, {3, 6}}},
      {"elementwise_product", "ij,ij->ij", {{3, 7}, {3, 7}}},
      {"repeated_output_order", "bij,bkj->bki", {{2, 3, 4}, {2, 5, 4}}},
  };
  for (const EinsumCase& c : cases)
    for (const Tol& t : kEinsumTols) expect_einsum_kernels_match(c, t.dtype, t.rtol, t.atol);
}

TEST(Einsum, CudaIntegerEquationsMatchReference) {
  const EinsumCase cases[] = {
      {"int_matmul", "ij,jk->ik", {{5, 6}, {6, 4}}},
      {"int_trace", "ii", {{6, 6}}},
      {"int_transpose", "ij->ji", {{3, 5}}},
      {"int_outer", "i,j->ij", {{3}, {4}}},
  };
  for (const EinsumCase& c : cases)
    for (DataType dt : {DataType::kInt32, DataType::kInt64}) expect_einsum_kernels_match(c, dt, 0, 1e-6);
}

}  // namespace
}  // namespace kiln::test
