#include <algorithm>
#include <map>
#include <random>
#include <set>

#include "ops/reshape/movement_test_util.h"

namespace kiln::test {
namespace {

TEST(GatherOps, GatherTakesSlicesWithNegativeIndices) {
  for (int64_t axis : {0, 1, -1}) {
    for (DataType it : {DataType::kInt64, DataType::kInt32}) {
      OpCase c("Gather", 13);
      c.attr("axis", ir::Attribute::from_int(axis));
      c.input(DataType::kFloat32, {3, 4, 5}).input(tensor_of(it, {2, 2}, {0, -1, 2, -3}));
      auto out = c.run();
      ASSERT_TRUE(out.ok()) << out.status().to_string();
      const Tensor& x = *c.inputs()[0];
      size_t a = static_cast<size_t>(axis < 0 ? axis + 3 : axis);
      int64_t n = x.dims()[a];
      std::vector<int64_t> idx = {0, -1, 2, -3};
      Dims od = x.dims();
      od.erase(od.begin() + static_cast<std::ptrdiff_t>(a));
      od.insert(od.begin() + static_cast<std::ptrdiff_t>(a), {2, 2});
      Tensor want = expected_by_coords(DataType::kFloat32, od, [&](const std::vector<int64_t>& o) {
        std::vector<int64_t> i(o.begin(), o.begin() + static_cast<std::ptrdiff_t>(a));
        int64_t k = idx[static_cast<size_t>(o[a] * 2 + o[a + 1])];
        i.push_back(k < 0 ? k + n : k);
        i.insert(i.end(), o.begin() + static_cast<std::ptrdiff_t>(a) + 2, o.end());
        return at(x, i);
      });
      EXPECT_TRUE(tensors_close((*out)[0], want, 0, 0)) << axis;
    }
  }
  OpCase s("Gather", 13);  // scalar index drops the axis
  s.input(DataType::kInt64, {3, 4}, -9, 9).input(scalar(DataType::kInt64, 2));
  auto out = s.run();
  ASSERT_TRUE(out.ok());
  EXPECT_EQ((*out)[0].dims(), (Dims{4}));
  EXPECT_EQ((*out)[0].get_as_double(1), at(*s.inputs()[0], {2, 1}));
}

TEST(GatherOps, GatherRejectsOutOfRangeIndices) {
  for (int64_t bad : {int64_t{3}, int64_t{-4}, int64_t{1} << 40}) {
    OpCase c("Gather", 13);
    c.input(DataType::kFloat32, {3, 4}).input(ints({0, bad}));
    EXPECT_TRUE(fails_naming_node(c.run())) << bad;
  }
  OpCase f("Gather", 13);
  f.input(DataType::kFloat32, {3, 4}).input(DataType::kFloat32, {2});
  EXPECT_TRUE(fails_naming_node(f.run()));
  OpCase s("Gather", 13);
  s.attr("axis", ir::Attribute::from_int(1)).input(DataType::kFloat32, {3, 4}).input(ints({0}));
  auto r = infer(s, {tt(DataType::kFloat32, {sym("batch"), 4}), tt(DataType::kInt64, {sym("n"), 2})});
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(shape_str((*r)[0]), "[batch,n,2]");
}

TEST(GatherOps, GatherElementsAlongAxis) {
  OpCase c("GatherElements", 13);
  Tensor idx = tensor_of(DataType::kInt64, {2, 3}, {1, -1, 0, 2, 0, -3});
  c.attr("axis", ir::Attribute::from_int(0)).input(DataType::kFloat32, {3, 4}).input(idx);
  auto out = c.run();
  ASSERT_TRUE(out.ok()) << out.status().to_string();
  const Tensor& x = *c.inputs()[0];
  Tensor want = expected_by_coords(DataType::kFloat32, {2, 3}, [&](const std::vector<int64_t>& o) {
    int64_t k = static_cast<int64_t>(at(idx, o));
    return at(x, {k < 0 ? k + 3 : k, o[1]});
  });
  EXPECT_TRUE(tensors_close((*out)[0], want, 0, 0));
  OpCase range("GatherElements", 13);
  range.input(DataType::kFloat32, {3, 4}).input(tensor_of(DataType::kInt64, {1, 1}, {3}));
  EXPECT_TRUE(fails_naming_node(range.run()));
  OpCase wide("GatherElements", 13);  // indices wider than data off the axis would read out of bounds
  wide.input(DataType::kFloat32, {3, 4}).input(tensor_of(DataType::kInt64, {1, 5}, {0, 0, 0, 0, 0}));
  EXPECT_TRUE(fails_naming_node(wide.run()));
}

TEST(GatherOps, GatherNDWithBatchDims) {
  OpCase c("GatherND", 13);
  Tensor idx = tensor_of(DataType::kInt64, {2, 3, 1}, {1, 0, -1, 2, 2, 0});
  c.attr("batch_dims", ir::Attribute::from_int(1)).input(DataType::kFloat32, {2, 3, 4}).input(idx);
  auto out = c.run();
  ASSERT_TRUE(out.ok()) << out.status().to_string();
  const Tensor& x = *c.inputs()[0];
  Tensor want = expected_by_coords(DataType::kFloat32, {2, 3, 4}, [&](const std::vector<int64_t>& o) {
    int64_t k = static_cast<int64_t>(at(idx, {o[0], o[1], 0}));
    return at(x, {o[0], k < 0 ? k + 3 : k, o[2]});
  });
  EXPECT_TRUE(tensors_close((*out)[0], want, 0, 0));

  OpCase full("GatherND", 13);  // index tuples that address single elements
  Tensor pts = tensor_of(DataType::kInt64, {2, 2}, {0, 3, 2, 1});
  full.input(DataType::kInt32, {3, 4}, -50, 50).input(pts);
  out = full.run();
  ASSERT_TRUE(out.ok()) << out.status().to_string();
  EXPECT_EQ((*out)[0].dims(), (Dims{2}));
  EXPECT_EQ((*out)[0].get_as_double(0), at(*full.inputs()[0], {0, 3}));
  EXPECT_EQ((*out)[0].get_as_double(1), at(*full.inputs()[0], {2, 1}));

  OpCase bad("GatherND", 13);
  bad.input(DataType::kFloat32, {3, 4}).input(tensor_of(DataType::kInt64, {1, 2}, {0, 4}));
  EXPECT_TRUE(fails_naming_node(bad.run()));
  OpCase deep("GatherND", 13);
  deep.input(DataType::kFloat32, {3, 4}).input(tensor_of(DataType::kInt64, {1, 3}, {0, 0, 0}));
  EXPECT_TRUE(fails_naming_node(deep.run()));
}

double reduce(double a, double b, const std::string& r) {
  if (r == "add") return a + b;
  if (r == "mul") return a * b;
  if (r == "max") return std::max(a, b);
  if (r == "min") return std::min(a, b);
  return b;
}

TEST(GatherOps, ScatterNDReductions) {
  for (std::string red : {"none", "add", "mul", "max", "min"}) {
    OpCase c("ScatterND", 18);
    c.attr("reduction", ir::Attribute::from_string(red));
    // Duplicate index 0 only where a reduction makes the order irrelevant.
    Tensor idx =
        red == "none" ? tensor_of(DataType::kInt64, {2, 1}, {2, -4}) : tensor_of(DataType::kInt64, {3, 1}, {0, 2, -4});
    int64_t n = idx.dim(0);
    c.input(DataType::kFloat32, {4, 3}).input(idx).input(DataType::kFloat32, {n, 3});
    auto out = c.run();
    ASSERT_TRUE(out.ok()) << out.status().to_string();
    Tensor want = c.inputs()[0]->clone();
    const Tensor& u = *c.inputs()[2];
    for (int64_t m = 0; m < n; ++m) {
      int64_t row = idx.get_as_int64(m) < 0 ? idx.get_as_int64(m) + 4 : idx.get_as_int64(m);
      for (int64_t j = 0; j < 3; ++j) want.set_from_double(row * 3 + j, reduce(at(want, {row, j}), at(u, {m, j}), red));
    }
    EXPECT_TRUE(tensors_close((*out)[0], want, 1e-6, 1e-6)) << red;
  }
  OpCase bad("ScatterND", 18);
  bad.input(DataType::kFloat32, {4, 3})
      .input(tensor_of(DataType::kInt64, {1, 1}, {4}))
      .input(DataType::kFloat32, {1, 3});
  EXPECT_TRUE(fails_naming_node(bad.run()));
  OpCase shape("ScatterND", 18);
  shape.input(DataType::kFloat32, {4, 3})
      .input(tensor_of(DataType::kInt64, {1, 1}, {0}))
      .input(DataType::kFloat32, {1, 2});
  EXPECT_TRUE(fails_naming_node(shape.run()));
}

TEST(GatherOps, ScatterElementsAndDeprecatedScatter) {
  for (std::string op : {"ScatterElements", "Scatter"}) {
    for (std::string red : {"none", "add", "max"}) {
      if (op == "Scatter" && red != "none") continue;
      OpCase c(op, op == "Scatter" ? 10 : 18);
      if (red != "none") c.attr("reduction", ir::Attribute::from_string(red));
      Tensor idx = tensor_of(DataType::kInt32, {2, 3}, {1, 0, 2, 0, 2, -2});
      c.attr("axis", ir::Attribute::from_int(0)).input(DataType::kInt64, {3, 3}, -20, 20).input(idx);
      c.input(DataType::kInt64, {2, 3}, -20, 20);
      auto out = c.run();
      ASSERT_TRUE(out.ok()) << out.status().to_string();
      Tensor want = c.inputs()[0]->clone();
      const Tensor& u = *c.inputs()[2];
      for (int64_t i = 0; i < 2; ++i)
        for (int64_t j = 0; j < 3; ++j) {
          int64_t k = static_cast<int64_t>(at(idx, {i, j}));
          k = k < 0 ? k + 3 : k;
          want.set_from_double(k * 3 + j, reduce(at(want, {k, j}), at(u, {i, j}), red));
        }
      EXPECT_TRUE(tensors_close((*out)[0], want, 0, 0)) << op << " " << red;
    }
  }
  OpCase bad("ScatterElements", 18);
  bad.input(DataType::kFloat32, {3}).input(ints({3})).input(DataType::kFloat32, {1});
  EXPECT_TRUE(fails_naming_node(bad.run()));
  OpCase red("ScatterElements", 18);
  red.attr("reduction", ir::Attribute::from_string("avg"));
  red.input(DataType::kFloat32, {3}).input(ints({1})).input(DataType::kFloat32, {1});
  EXPECT_TRUE(fails_naming_node(red.run()));
}

TEST(GatherOps, CompressAlongAxisAndFlattened) {
  Tensor cond = tensor_of(DataType::kBool, {3}, {1, 0, 1});
  OpCase c("Compress", 11);
  c.attr("axis", ir::Attribute::from_int(-1)).input(DataType::kFloat32, {2, 4}).input(cond);
  auto out = c.run();
  ASSERT_TRUE(out.ok()) << out.status().to_string();
  const Tensor& x = *c.inputs()[0];
  Tensor want = expected_by_coords(DataType::kFloat32, {2, 2}, [&](const std::vector<int64_t>& o) {
    return at(x, {o[0], o[1] * 2});
  });
  EXPECT_TRUE(tensors_close((*out)[0], want, 0, 0));

  OpCase flat("Compress", 11);
  flat.input(DataType::kFloat32, {2, 4}).input(tensor_of(DataType::kBool, {6}, {0, 0, 0, 1, 0, 1}));
  out = flat.run();
  ASSERT_TRUE(out.ok()) << out.status().to_string();
  EXPECT_EQ((*out)[0].dims(), (Dims{2}));
  EXPECT_EQ((*out)[0].get_as_double(1), flat.inputs()[0]->get_as_double(5));

  OpCase past("Compress", 11);  // a true past the axis
  past.attr("axis", ir::Attribute::from_int(0)).input(DataType::kFloat32, {2, 4}).input(cond);
  EXPECT_TRUE(fails_naming_node(past.run()));
}

TEST(GatherOps, OneHotWithNegativeAndOutOfRangeIndices) {
  for (int64_t axis : {-1, 0, 1}) {
    OpCase c("OneHot", 11);
    Tensor idx = tensor_of(DataType::kFloat32, {2, 2}, {1, -1, 7, 3});
    c.attr("axis", ir::Attribute::from_int(axis));
    c.input(idx).input(scalar(DataType::kInt64, 5)).input(tensor_of(DataType::kInt32, {2}, {-2, 9}));
    auto out = c.run();
    ASSERT_TRUE(out.ok()) << out.status().to_string();
    size_t a = static_cast<size_t>(axis < 0 ? 2 : axis);
    Dims od = {2, 2};
    od.insert(od.begin() + static_cast<std::ptrdiff_t>(a), 5);
    Tensor want = expected_by_coords(DataType::kInt32, od, [&](std::vector<int64_t> o) {
      int64_t k = o[a];
      o.erase(o.begin() + static_cast<std::ptrdiff_t>(a));
      int64_t v = static_cast<int64_t>(at(idx, o));
      if (v < 0) v += 5;
      return v == k ? 9.0 : -2.0;
    });
    EXPECT_TRUE(tensors_close((*out)[0], want, 0, 0)) << axis;
  }
  OpCase huge("OneHot", 11);
  huge.input(ints({0})).input(scalar(DataType::kFloat32, 1e15f)).input(tensor_of(DataType::kFloat32, {2}, {0, 1}));
  EXPECT_TRUE(fails_naming_node(huge.run()));
  OpCase s("OneHot", 11);
  s.input(ints({0})).input(scalar(DataType::kInt64, 4)).input(tensor_of(DataType::kFloat32, {2}, {0, 1}));
  Tensor depth = scalar(DataType::kInt64, 4);
  auto r = infer(s, {tt(DataType::kInt64, {sym("batch")}), tt(DataType::kInt64, {}), tt(DataType::kFloat32, {2})},
                 {nullptr, &depth});
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(shape_str((*r)[0]), "[batch,4]");
}

TEST(GatherOps, NonZeroCoordinatesAndExactInference) {
  OpCase c("NonZero", 13);
  c.input(DataType::kInt8, {3, 4}, -1, 1);
  auto out = c.run();
  ASSERT_TRUE(out.ok()) << out.status().to_string();
  const Tensor& x = *c.inputs()[0];
  std::vector<std::vector<int64_t>> nz;
  for (int64_t i = 0; i < 3; ++i)
    for (int64_t j = 0; j < 4; ++j)
      if (at(x, {i, j}) != 0) nz.push_back({i, j});
  auto n = static_cast<int64_t>(nz.size());
  Tensor want = expected_by_coords(DataType::kInt64, {2, n}, [&](const std::vector<int64_t>& o) {
    return nz[static_cast<size_t>(o[1])][static_cast<size_t>(o[0])];
  });
  EXPECT_TRUE(tensors_close((*out)[0], want, 0, 0));
  auto r = infer(c, {tt(DataType::kInt8, {3, 4})}, {&x});
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(shape_str((*r)[0]), "[2," + std::to_string(n) + "]");
  r = infer(c, {tt(DataType::kInt8, {sym("b"), 4})});
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(shape_str((*r)[0]), "[2,?]");
}

TEST(GatherOps, TriluKeepsTriangles) {
  for (int64_t k : {-7, -1, 0, 2, 6}) {
    for (int upper : {0, 1}) {
      OpCase c("Trilu", 14);
      c.attr("upper", ir::Attribute::from_int(upper))
          .input(DataType::kFloat16, {2, 3, 5})
          .input(scalar(DataType::kInt64, k));
      auto out = c.run();
      ASSERT_TRUE(out.ok()) << out.status().to_string();
      const Tensor& x = *c.inputs()[0];
      Tensor want = expected_by_coords(DataType::kFloat16, {2, 3, 5}, [&](const std::vector<int64_t>& o) {
        bool keep = upper ? o[2] - o[1] >= k : o[2] - o[1] <= k;
        return keep ? at(x, o) : 0.0;
      });
      EXPECT_TRUE(tensors_close((*out)[0], want, 0, 0)) << k << " " << upper;
    }
  }
  OpCase bad("Trilu", 14);
  bad.input(DataType::kFloat32, {3});
  EXPECT_TRUE(fails_naming_node(bad.run()));
}

TEST(GatherOps, EyeLikeDiagonals) {
  for (int64_t k : {-2, 0, 1, 9}) {
    OpCase c("EyeLike", 22);
    c.attr("k", ir::Attribute::from_int(k))
        .attr("dtype", ir::Attribute::from_int(static_cast<int64_t>(DataType::kFloat64)));
    c.input(DataType::kInt32, {3, 4});
    auto out = c.run();
    ASSERT_TRUE(out.ok()) << out.status().to_string();
    Tensor want = expected_by_coords(DataType::kFloat64, {3, 4},
                                     [&](const std::vector<int64_t>& o) { return o[1] - o[0] == k ? 1.0 : 0.0; });
    EXPECT_TRUE(tensors_close((*out)[0], want, 0, 0));
  }
  OpCase b("EyeLike", 22);
  b.input(DataType::kBool, {2, 2});
  auto out = b.run();
  ASSERT_TRUE(out.ok());
  EXPECT_TRUE(tensors_close((*out)[0], tensor_of(DataType::kBool, {2, 2}, {1, 0, 0, 1}), 0, 0));
  OpCase bad("EyeLike", 22);
  bad.input(DataType::kFloat32, {2, 2, 2});
  EXPECT_TRUE(fails_naming_node(bad.run()));
}

TEST(GatherOps, ReverseSequenceBothLayouts) {
  for (int64_t batch_axis : {0, 1}) {
    OpCase c("ReverseSequence", 10);
    Tensor lens = ints({3, 0, 4});
    Dims d = batch_axis == 0 ? Dims{3, 4, 2} : Dims{4, 3, 2};
    c.attr("batch_axis", ir::Attribute::from_int(batch_axis))
        .attr("time_axis", ir::Attribute::from_int(1 - batch_axis));
    c.input(DataType::kFloat32, d).input(lens);
    auto out = c.run();
    ASSERT_TRUE(out.ok()) << out.status().to_string();
    const Tensor& x = *c.inputs()[0];
    Tensor want = expected_by_coords(DataType::kFloat32, d, [&](std::vector<int64_t> o) {
      auto b = static_cast<size_t>(batch_axis), t = static_cast<size_t>(1 - batch_axis);
      int64_t len = lens.get_as_int64(o[b]);
      if (o[t] < len) o[t] = len - 1 - o[t];
      return at(x, o);
    });
    EXPECT_TRUE(tensors_close((*out)[0], want, 0, 0));
  }
  OpCase bad("ReverseSequence", 10);
  bad.input(DataType::kFloat32, {4, 2}).input(ints({5, 1}));
  EXPECT_TRUE(fails_naming_node(bad.run()));
}

TEST(GatherOps, UniqueFlattenedSortedAndUnsorted) {
  Tensor x = tensor_of(DataType::kInt64, {2, 4}, {5, 1, 5, -3, 1, 1, 9, -3});
  for (int sorted : {1, 0}) {
    OpCase c("Unique", 11);
    c.attr("sorted", ir::Attribute::from_int(sorted)).input(x).outputs(4);
    auto out = c.run();
    ASSERT_TRUE(out.ok()) << out.status().to_string();
    std::vector<double> vals;
    std::map<double, int64_t> first, count;
    for (int64_t i = 0; i < 8; ++i) {
      double v = x.get_as_double(i);
      if (!first.count(v)) {
        first[v] = i;
        vals.push_back(v);
      }
      ++count[v];
    }
    if (sorted) std::sort(vals.begin(), vals.end());
    auto u = static_cast<int64_t>(vals.size());
    ASSERT_EQ((*out)[0].dims(), (Dims{u}));
    for (int64_t k = 0; k < u; ++k) {
      double v = vals[static_cast<size_t>(k)];
      EXPECT_EQ((*out)[0].get_as_double(k), v);
      EXPECT_EQ((*out)[1].get_as_int64(k), first[v]);
      EXPECT_EQ((*out)[3].get_as_int64(k), count[v]);
    }
    for (int64_t i = 0; i < 8; ++i) EXPECT_EQ(vals[static_cast<size_t>((*out)[2].get_as_int64(i))], x.get_as_double(i));
  }
}

TEST(GatherOps, UniqueAlongAxis) {
  Tensor x = tensor_of(DataType::kFloat32, {2, 4}, {1, 0, 1, 0, 2, 1, 2, 1});
  OpCase c("Unique", 11);
  c.attr("axis", ir::Attribute::from_int(1)).input(x).outputs(4);
  auto out = c.run();
  ASSERT_TRUE(out.ok()) << out.status().to_string();
  EXPECT_TRUE(tensors_close((*out)[0], tensor_of(DataType::kFloat32, {2, 2}, {0, 1, 1, 2}), 0, 0));
  EXPECT_TRUE(tensors_close((*out)[1], ints({1, 0}), 0, 0));
  EXPECT_TRUE(tensors_close((*out)[2], ints({1, 0, 1, 0}), 0, 0));
  EXPECT_TRUE(tensors_close((*out)[3], ints({2, 2}), 0, 0));
  auto r = infer(c, {tt(DataType::kFloat32, {2, 4})}, {&x});
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(shape_str((*r)[0]), "[2,2]");
  EXPECT_EQ(shape_str((*r)[2]), "[4]");
}

/// A random permutation of [0, n) shifted by -n on odd positions (negative indices, no duplicates).
Tensor unique_indices(DataType dt, const Dims& dims, int64_t n, unsigned seed) {
  std::vector<double> v(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) v[static_cast<size_t>(i)] = static_cast<double>(i);
  std::mt19937 rng(seed);
  std::shuffle(v.begin(), v.end(), rng);
  Tensor t = Tensor::empty(dt, dims);
  for (int64_t i = 0; i < t.numel(); ++i) t.set_from_double(i, v[static_cast<size_t>(i)] - ((i & 1) ? n : 0));
  return t;
}

/// Random indices in [-n, n) (duplicates allowed).
Tensor random_indices(DataType dt, const Dims& dims, int64_t n, unsigned seed) {
  std::mt19937 rng(seed);
  Tensor t = Tensor::empty(dt, dims);
  for (int64_t i = 0; i < t.numel(); ++i)
    t.set_from_double(i, static_cast<double>(static_cast<int64_t>(rng() % static_cast<uint32_t>(2 * n)) - n));
  return t;
}

// The CUDA kernels (when a GPU is present) must match the reference on every path.
TEST(GatherOps, CudaGatherFamilyMatchesReference) {
  for (DataType it : {DataType::kInt64, DataType::kInt32}) {
    for (DataType dt : {DataType::kFloat32, DataType::kFloat16, DataType::kInt64, DataType::kUInt8}) {
      for (int64_t axis : {0, 1, -1}) {
        OpCase g("Gather", 13);
        g.attr("axis", ir::Attribute::from_int(axis)).input(dt, {5, 7, 9}, -9, 9);
        int64_t n = axis == 0 ? 5 : axis == 1 ? 7 : 9;
        g.input(random_indices(it, {2, 3}, n, 7));
        EXPECT_GE(g.expect_all_kernels_match(0, 0), 0);
        OpCase e("GatherElements", 13);
        e.attr("axis", ir::Attribute::from_int(axis)).input(dt, {5, 7, 9}, -9, 9);
        Dims id = {4, 6, 8};
        id[static_cast<size_t>(axis < 0 ? axis + 3 : axis)] = 11;
        e.input(random_indices(it, id, n, 9));
        EXPECT_GE(e.expect_all_kernels_match(0, 0), 0);
      }
    }
    OpCase emb("Gather", 13);  // embedding lookup: wide rows take the vectorized path
    emb.input(DataType::kFloat16, {1000, 256}).input(random_indices(it, {3, 77}, 1000, 3));
    EXPECT_GE(emb.expect_all_kernels_match(0, 0), 0);
    OpCase sc("Gather", 13);  // scalar index
    sc.attr("axis", ir::Attribute::from_int(1)).input(DataType::kFloat32, {3, 4}).input(scalar(it, -2));
    EXPECT_GE(sc.expect_all_kernels_match(0, 0), 0);
  }
  for (int64_t b : {0, 1, 2}) {
    OpCase nd("GatherND", 13);
    nd.attr("batch_dims", ir::Attribute::from_int(b)).input(DataType::kFloat32, {2, 3, 4, 5});
    Dims id = {2, 3, 2};
    if (b == 0) id = {3, 2};
    nd.input(random_indices(DataType::kInt64, id, 2, 5));  // |index| < 2 fits every dim
    EXPECT_GE(nd.expect_all_kernels_match(0, 0), 0) << b;
  }
  OpCase full("GatherND", 13);  // whole-element tuples
  full.input(DataType::kInt32, {4, 5, 6}, -9, 9).input(random_indices(DataType::kInt64, {7, 3}, 4, 2));
  EXPECT_GE(full.expect_all_kernels_match(0, 0), 0);
}

TEST(GatherOps, CudaScatterAndTriluMatchReference) {
  for (const char* red : {"none", "add", "mul", "max", "min"}) {
    for (DataType dt : {DataType::kFloat32, DataType::kFloat16, DataType::kInt64}) {
      bool none = std::string(red) == "none";
      OpCase nd("ScatterND", 18);
      nd.attr("reduction", ir::Attribute::from_string(red)).input(dt, {6, 3, 5}, -3, 3);
      // "none" needs distinct targets (duplicates are undefined); the reductions get duplicates.
      Tensor idx =
          none ? unique_indices(DataType::kInt64, {4, 1}, 6, 1) : random_indices(DataType::kInt64, {9, 1}, 6, 1);
      nd.input(idx).input(dt, {idx.dims()[0], 3, 5}, -3, 3);
      EXPECT_GE(nd.expect_all_kernels_match(1e-2, 1e-2), 0) << red;
      for (int64_t axis : {0, -1}) {
        OpCase se("ScatterElements", 18);
        se.attr("reduction", ir::Attribute::from_string(red)).attr("axis", ir::Attribute::from_int(axis));
        se.input(dt, {4, 5}, -3, 3);
        Tensor ei = Tensor::empty(DataType::kInt32, {3, 4});
        if (none) {
          // Distinct along the axis within each line: a shifted permutation.
          for (int64_t i = 0; i < 3; ++i)
            for (int64_t j = 0; j < 4; ++j)
              ei.set_from_double(i * 4 + j, static_cast<double>(axis == 0 ? (i + j) % 4 : (j + i) % 5));
        } else {
          ei = random_indices(DataType::kInt32, {3, 4}, 4, 11);
        }
        se.input(ei).input(dt, {3, 4}, -3, 3);
        EXPECT_GE(se.expect_all_kernels_match(1e-2, 1e-2), 0) << red << axis;
      }
    }
  }
  for (DataType dt : {DataType::kFloat32, DataType::kFloat16, DataType::kInt32}) {
    for (int64_t upper : {0, 1}) {
      for (int64_t k : {-2, 0, 3}) {
        OpCase t("Trilu", 14);
        t.attr("upper", ir::Attribute::from_int(upper)).input(dt, {2, 5, 7}, -9, 9).input(scalar(DataType::kInt64, k));
        EXPECT_GE(t.expect_all_kernels_match(0, 0), 0);
      }
      OpCase nok("Trilu", 14);
      nok.attr("upper", ir::Attribute::from_int(upper)).input(dt, {6, 4}, -9, 9);
      EXPECT_GE(nok.expect_all_kernels_match(0, 0), 0);
    }
  }
  for (int64_t axis : {-1, 0, 1}) {
    OpCase o("OneHot", 11);
    o.attr("axis", ir::Attribute::from_int(axis));
    o.input(tensor_of(DataType::kInt64, {2, 3}, {0, -1, 4, 7, -6, 2}));
    o.input(scalar(DataType::kInt64, 5)).input(tensor_of(DataType::kFloat16, {2}, {-1, 3}));
    EXPECT_GE(o.expect_all_kernels_match(0, 0), 0);
  }
}

}  // namespace
}  // namespace kiln::test
