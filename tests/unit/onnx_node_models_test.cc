// Every ONNX backend node-test model either imports, or fails only because kiln lacks
// an operator or type: the importer itself must accept every valid ONNX file.
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <map>

#include "builder/network_impl.h"
#include "kiln/onnx_parser.h"

namespace kiln {
namespace {

class QuietLogger : public Logger {
 public:
  QuietLogger() : Logger(Severity::kInternalError) {}
  void log(Severity, const std::string&) override {}
};

bool is_unsupported(const ParserError& e) {
  return e.message.find("is not supported") != std::string::npos ||
         e.message.find("kiln supports only tensor") != std::string::npos;
}

TEST(OnnxImporterNodeModels, ImportOrReportOnlyMissingSupport) {
  namespace fs = std::filesystem;
  fs::path root = fs::path(KILN_SOURCE_DIR) / "third_party_data" / "onnx-node-tests";
  if (!fs::is_directory(root)) GTEST_SKIP() << "no node tests at " << root;
  int models = 0, imported = 0;
  std::map<std::string, int> reasons;
  std::vector<std::string> dirs;
  for (const auto& d : fs::directory_iterator(root))
    if (fs::exists(d.path() / "model.onnx")) dirs.push_back(d.path().string());
  std::sort(dirs.begin(), dirs.end());
  for (const auto& d : dirs) {
    ++models;
    QuietLogger logger;
    NetworkDefinition net;
    OnnxParser parser(net, logger);
    if (parser.parse_from_file(d + "/model.onnx")) {
      ++imported;
      EXPECT_TRUE(ir::verify(net.impl().graph).ok()) << d;
      continue;
    }
    for (int i = 0; i < parser.num_errors(); ++i) {
      const std::string& msg = parser.error(i).message;
      ++reasons[msg.substr(0, msg.find(" ("))];
    }
    for (int i = 0; i < parser.num_errors(); ++i)
      EXPECT_TRUE(is_unsupported(parser.error(i)))
          << fs::path(d).filename().string() << ": " << parser.error(i).to_string();
  }
  EXPECT_GT(models, 0);
  // KILN_VERBOSE=1 lists why models do not import, most common first.
  if (std::getenv("KILN_VERBOSE")) {
    std::vector<std::pair<int, std::string>> sorted;
    for (auto& [m, n] : reasons) sorted.emplace_back(-n, m);
    std::sort(sorted.begin(), sorted.end());
    for (auto& [n, m] : sorted) std::cout << "  " << -n << "  " << m << "\n";
  }
  std::cout << "[ node models ] " << imported << " of " << models << " import with today's op registry\n";
}

}  // namespace
}  // namespace kiln
