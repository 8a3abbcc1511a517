// What an Engine shares with its contexts: the planned graph, weights, profiles.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "kiln/runtime.h"
#include "plan/engine_file.h"

namespace kiln {

struct CudaWeights;  // runtime/cuda_executor.h

struct IoTensor {
  std::string name;
  TensorIOMode mode = TensorIOMode::kNone;
  DataType dtype = DataType::kUndefined;
  Shape shape;  ///< declared shape (symbolic dims stay symbolic)
  const ir::Value* value = nullptr;
};

struct EngineData {
  plan::EngineModel model;
  std::vector<IoTensor> io;  ///< inputs first, then outputs
  const IoTensor* find_io(const std::string& name) const {
    for (auto& t : io)
      if (t.name == name) return &t;
    return nullptr;
  }
  std::string json_text;  ///< inspect_json(), built once
  std::shared_ptr<CudaWeights> cuda_weights;  ///< CUDA engines: weights on the device, shared by contexts
};

/// Builds the io table and inspect JSON from a deserialized model.
std::shared_ptr<EngineData> make_engine_data(plan::EngineModel model);

}  // namespace kiln
