#!/usr/bin/env python3
"""Writes the ONNX backend node tests of the pinned `onnx` package to a folder.

The `onnx` wheel ships the test *cases* (onnx/backend/test/case/node/*.py) but
not their generated data, and the 1.23 source distribution no longer carries
data/node either, so we generate the standard layout ourselves:
  OUT/<test name>/model.onnx
  OUT/<test name>/test_data_set_N/{input,output}_K.pb   (TensorProto)
Tests whose inputs or outputs are sequences, maps or optionals are written too
(as the onnx tool does); the runner reports them as unsupported I/O kinds.
"""
import os
import shutil
import sys
import warnings

import onnx
from onnx import numpy_helper
from onnx.backend.test.case import node as node_cases


def write_value(path, value, type_proto, name):
    if type_proto.HasField("sequence_type"):
        proto = numpy_helper.from_list(value, name)
    elif type_proto.HasField("optional_type"):
        proto = numpy_helper.from_optional(value, name)
    elif type_proto.HasField("map_type"):
        proto = numpy_helper.from_dict(value, name)
    elif isinstance(value, onnx.TensorProto):
        proto = value
    else:
        proto = numpy_helper.from_array(value, name)
    with open(path, "wb") as f:
        f.write(proto.SerializeToString())


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: gen_onnx_node_tests.py OUT_DIR")
    out = sys.argv[1]
    stamp = os.path.join(out, ".onnx-version")
    if os.path.exists(stamp) and open(stamp).read().strip() == onnx.__version__:
        print(f"node tests for onnx {onnx.__version__} already in {out}")
        return
    # The case generators compute some expected outputs that overflow on purpose.
    warnings.simplefilter("ignore")
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(out)
    cases = node_cases.collect_testcases(None)
    for case in cases:
        d = os.path.join(out, case.name)
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, "model.onnx"), "wb") as f:
            f.write(case.model.SerializeToString())
        g = case.model.graph
        for i, (inputs, outputs) in enumerate(case.data_sets):
            ds = os.path.join(d, f"test_data_set_{i}")
            os.makedirs(ds, exist_ok=True)
            for j, v in enumerate(inputs):
                write_value(os.path.join(ds, f"input_{j}.pb"), v, g.input[j].type, g.input[j].name)
            for j, v in enumerate(outputs):
                write_value(os.path.join(ds, f"output_{j}.pb"), v, g.output[j].type, g.output[j].name)
    with open(stamp, "w") as f:
        f.write(onnx.__version__)
    print(f"wrote {len(cases)} node tests for onnx {onnx.__version__} to {out}")


if __name__ == "__main__":
    main()
