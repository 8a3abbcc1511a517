"""kiln: a deep-learning inference optimizer and runtime with a TensorRT-shaped API.

Names follow TensorRT's Python API, so moving over is mostly a change of import::

    import kiln

    logger = kiln.Logger(kiln.Logger.WARNING)
    builder = kiln.Builder(logger)
    network = builder.create_network()
    parser = kiln.OnnxParser(network, logger)
    if not parser.parse_from_file("model.onnx"):
        raise SystemExit("\\n".join(str(parser.get_error(i)) for i in range(parser.num_errors)))
    config = builder.create_builder_config()
    engine_bytes = builder.build_serialized_network(network, config)
    engine = kiln.Runtime(logger).deserialize_cuda_engine(engine_bytes)
    context = engine.create_execution_context()
    outputs = context.infer({"images": array})     # {name: numpy array}

Errors raise kiln.KilnError subclasses carrying kiln's message (InvalidArgumentError
and OutOfRangeError are also ValueErrors, NotFoundError a LookupError, ...).

Engines run on the CPU (the default) or on a CUDA GPU::

    config.set_device(kiln.DeviceType.CUDA)          # config.device_index picks the GPU
    ...
    x = torch.randn(1, 3, 224, 224, device="cuda")
    outputs = context.infer({"images": x})           # {name: torch CUDA tensor}, no copies

CUDA engines take host or device memory anywhere a buffer goes (numpy, torch, cupy,
kiln.DeviceArray, int addresses); execute_async_v3(stream) enqueues on a cudaStream_t.
kiln.cuda_device_count() says whether a GPU is usable, cuda_unavailable_reason() why not.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from . import _kiln
from ._kiln import (
    ActivationType,
    Builder,
    BuilderConfig,
    BuilderFlag,
    DataType,
    DeviceArray,
    DeviceType,
    ElementWiseOperation,
    Engine,
    ErrorCode,
    ExecutionContext,
    ILogger,
    IProgressMonitor,
    Layer,
    Logger,
    MatrixOperation,
    MemoryPoolType,
    NetworkDefinition,
    NetworkDefinitionCreationFlag,
    NetworkTensor,
    OnnxParser,
    OptimizationProfile,
    ParserError,
    PoolingType,
    ProgressMonitor,
    RunTiming,
    Runtime,
    TensorIOMode,
    __version__,
    cuda_device_capability,
    cuda_device_count,
    cuda_device_name,
    cuda_unavailable_reason,
    dtype_name,
    dtype_size,
    nptype,
)
from .errors import (
    DeviceMismatchError,
    InternalError,
    InvalidArgumentError,
    InvalidModelError,
    IoError,
    KilnError,
    NotFoundError,
    OutOfMemoryError,
    OutOfRangeError,
    UnsupportedError,
    VersionMismatchError,
)
from .host_memory import SerializedEngine

# TensorRT's interface names, so `import kiln as trt` code keeps working.
ITensor = NetworkTensor
ILayer = Layer
INetworkDefinition = NetworkDefinition
IBuilderConfig = BuilderConfig
IOptimizationProfile = OptimizationProfile
ICudaEngine = Engine
IExecutionContext = ExecutionContext
IHostMemory = SerializedEngine
IRuntime = Runtime

# Data types at module level, as tensorrt.float32 etc.
float32 = DataType.FLOAT32
float16 = DataType.FLOAT16
float64 = DataType.FLOAT64
bfloat16 = DataType.BFLOAT16
int8 = DataType.INT8
int16 = DataType.INT16
int32 = DataType.INT32
int64 = DataType.INT64
uint8 = DataType.UINT8
uint16 = DataType.UINT16
uint32 = DataType.UINT32
uint64 = DataType.UINT64
bool = DataType.BOOL  # noqa: A001 - mirrors tensorrt.bool


def volume(shape: Iterable[int]) -> int:
    """Number of elements of a shape (1 for a scalar); negative if a dim is dynamic (-1)."""
    dims = list(shape)
    if any(d < 0 for d in dims):
        return -1
    return math.prod(dims)


def Weights(array=None):  # noqa: N802 - TensorRT's spelling
    """TensorRT's Weights(numpy_array): kiln takes arrays directly, so this returns a
    C-contiguous numpy array (empty float32 when called without one)."""
    import numpy

    if array is None:
        return numpy.zeros((0,), dtype=numpy.float32)
    return numpy.ascontiguousarray(array)


__all__ = [name for name in dir() if not name.startswith("_") and name not in ("annotations", "math", "Iterable")]
