#include "harness/op_harness.h"

namespace kiln::test {

TEST(Identity, CopiesEveryDtype) {
  for (DataType t : {DataType::kFloat32, DataType::kInt64, DataType::kFloat16, DataType::kBool}) {
    OpCase c("Identity");
    c.input(t, {2, 3, 5}, -10, 10);
    auto out = c.run();
    ASSERT_TRUE(out.ok()) << out.status().to_string();
    EXPECT_TRUE(tensors_close((*out)[0], *c.inputs()[0], 0, 0));
  }
}

}  // namespace kiln::test
