"""Stage 1 of the GPU checks (``dynconv.export.gpu_cases``) on the CPU, the stage-2 modules' clean
skip / refusal without TensorRT and without torch imports, the compat-form graphs, the DRConv flipped
references, and the dry run of the parity step with fake engines."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest

from dynconv.export import gpu_cases
from dynconv.export.op_models import parity_grid
from parity import assert_close_scaled, custom_nodes, run_onnxruntime

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
SUBSET = ["01-", "05-", "08-"]  # a strided grouped DCNv2 (NCHW), a DCNv3 (NHWC), a strided DDF


def _has_tensorrt() -> bool:
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.fixture(scope="module")
def stage1(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("gpu_cases")
    assert gpu_cases.main([str(out), "--cases", *SUBSET]) == 0
    return out


def _dims(value: onnx.ValueInfoProto) -> list:
    return [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]


def test_case_ids_are_unique_and_filterable():
    every = gpu_cases.select_cases()
    ids = [cid for cid, _ in every]
    assert len(ids) == len(set(ids)) == len(parity_grid()) + 1 and ids[-1] == "mixed"
    assert all(cid.replace("-", "").replace(".", "").isalnum() for cid in ids)
    assert [cid for cid, _ in gpu_cases.select_cases(["dcnv3"])] == [i for i in ids if "dcnv3" in i]
    assert [cid for cid, _ in gpu_cases.select_cases(["0?-dcnv*"], limit=2)] == ids[:2]


def test_manifest_lists_the_selected_cases(stage1):
    manifest = json.loads((stage1 / "manifest.json").read_text())
    assert manifest["bench"] is None and manifest["channels"] == gpu_cases.CHANNELS
    assert [c["id"][:3] for c in manifest["cases"]] == SUBSET
    assert [c["layout"] for c in manifest["cases"]] == ["NCHW", "NHWC", "NCHW"]
    for case in manifest["cases"]:
        files = case["files"]
        paths = [files[k] for k in ("trt_fp32", "trt_fp16", "ref", "profile")] + files["inputs"] + files["eager"]
        assert all((stage1 / p).is_file() for p in paths), paths
        assert len(files["inputs"]) == len(files["eager"]) == len(case["run_sizes"]) == 2


@pytest.mark.parametrize("index", range(len(SUBSET)))
def test_case_files_are_consistent(stage1, index):
    case = json.loads((stage1 / "manifest.json").read_text())["cases"][index]
    spec_case = dict(gpu_cases.select_cases())[case["id"]]
    files, names = case["files"], case["input_names"]
    trt32, trt16, ref = (onnx.load(stage1 / files[k]) for k in ("trt_fp32", "trt_fp16", "ref"))
    for proto in (trt32, trt16, ref):
        onnx.checker.check_model(proto)
        assert [v.name for v in proto.graph.input] == names
        assert [v.name for v in proto.graph.output] == case["output_names"]
    for proto, elem in ((trt32, onnx.TensorProto.FLOAT), (trt16, onnx.TensorProto.FLOAT16)):
        nodes = custom_nodes(proto)
        assert len(nodes) == 1 and nodes[0].op_type == spec_case.op
        assert all(v.type.tensor_type.elem_type == elem for v in (*proto.graph.input, *proto.graph.output))
    assert custom_nodes(ref) == []
    # NCHW: batch, height and width dynamic; NHWC (DCNv3): batch only
    first = _dims(trt32.graph.input[0])
    assert isinstance(first[0], str)
    assert all(isinstance(d, str) for d in first[2:]) == (case["layout"] == "NCHW")
    assert all(isinstance(d, int) for d in first[1:]) == (case["layout"] == "NHWC")

    profile = json.loads((stage1 / files["profile"]).read_text())
    assert list(profile) == names
    for inputs_file, eager_file, size in zip(files["inputs"], files["eager"], case["run_sizes"]):
        with np.load(stage1 / inputs_file) as data:
            assert sorted(data.files) == sorted(names)
            arrays = [data[name] for name in names]
        for name, array in zip(names, arrays):
            lo, hi = profile[name]["min"], profile[name]["max"]
            assert array.dtype == np.float32 and array.ndim == len(lo)
            assert all(a <= s <= b for a, s, b in zip(lo, array.shape, hi)), (name, array.shape, lo, hi)
        assert arrays[0].shape[0] == size[0]
        with np.load(stage1 / eager_file) as data:
            eager = data[case["output_names"][0]]
        assert_close_scaled(run_onnxruntime(ref, arrays)[0], eager, 1e-4)
    for inputs_file, ref_file in zip(files["inputs"], files["ref_outputs"]):
        with np.load(stage1 / inputs_file) as data:
            arrays = [data[name] for name in names]
        with np.load(stage1 / ref_file) as data:
            stored = data[case["output_names"][0]]
        np.testing.assert_array_equal(stored, run_onnxruntime(ref, arrays)[0])  # stage 2 needs no onnxruntime
    assert "flips" not in files and "drconv" not in case  # no DRConv in this case


def test_stage1_cli_refuses_an_empty_selection(tmp_path, capsys):
    assert gpu_cases.main([str(tmp_path), "--cases", "no-such-case"]) == 2
    assert "no case matches" in capsys.readouterr().err
    assert not (tmp_path / "manifest.json").exists()


def _run(args: list[str], **env: str) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if k != "DYNCONV_GPU_CASES"} | env
    return subprocess.run([sys.executable, *args], cwd=REPO, env=environment, capture_output=True, text=True,
                          timeout=300)


def test_stage2_modules_import_no_torch():
    code = ("import sys; sys.path.insert(0, 'tests'); import dynconv.plugins.native, dynconv.runtime, "
            "dynconv.runtime.bench_plugins, dynconv.runtime.builder, dynconv.runtime.engine, test_gpu_plugins, "
            "dynconv.runtime.gpu_check, dynconv.runtime.gpu_parity, dynconv.runtime.gpu_plan; "
            "print('torch' in sys.modules, 'onnxruntime' in sys.modules, 'onnx' in sys.modules)")
    proc = _run(["-c", code])
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "False False False"  # the slim TensorRT bundle has none


@pytest.mark.skipif(_has_tensorrt(), reason="TensorRT present: the GPU tests would run, not skip")
@pytest.mark.parametrize("with_cases", [False, True])
def test_stage2_tests_skip_cleanly_without_tensorrt(stage1, with_cases):
    env = {"DYNCONV_GPU_CASES": str(stage1)} if with_cases else {}
    proc = _run(["-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", "tests/test_gpu_plugins.py"], **env)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert "passed" not in out and "error" not in out.lower() and "skipped" in out
    assert "tensorrt is not installed" in out
    assert ("DYNCONV_GPU_CASES is not set" in out) != with_cases
    if with_cases:  # parametrized over the manifest: 3 op cases x 2 precisions + the (absent) network
        assert "8 skipped" in out, out


def test_dry_run_of_the_parity_step_with_fake_engines(stage1, tmp_path):
    from dynconv.runtime import gpu_check

    out = tmp_path / "out"
    argv = [str(stage1), "--out", str(out), "--fake", "--steps", "parity", "sanitize", "--jobs", "2"]
    assert gpu_check.main(argv) == 0  # two spawned build workers, as on the GPU host (6 there)
    summary = json.loads((out / "summary.json").read_text())
    rows = summary["parity"]
    assert summary["parity_passed"] and len(rows) == len(SUBSET) * 2 * 2 * 3  # cases x precisions x runs x rows
    assert {r["against"] for r in rows} == {"onnxruntime", "pytorch", "onnxruntime-vs-pytorch"}
    assert summary["sanitizer"]["status"] == "not run (dry run)"
    assert len(summary["sanitizer"]["targets"]) == len(SUBSET) * 2  # one op each, both precisions
    assert "parity rows within tolerance" in (out / "parity.txt").read_text()


def test_compat_nodes_take_the_exporters_exact_form():
    from onnx import helper

    node = helper.make_node("DynconvDeformConv2d", ["x", "w", "off", "m", "b"], ["y"], domain="dynconv",
                            stride=[2, 1], padding=[1, 2], dilation=[1, 2], groups=2, offset_groups=4, with_mask=1,
                            with_bias=1, plugin_version="1")
    mod = gpu_cases.compat_node(node, "MMCVModulatedDeformConv2d")
    assert (mod.domain, mod.op_type, list(mod.input)) == ("mmdeploy", "MMCVModulatedDeformConv2d",
                                                         ["x", "off", "m", "w", "b"])
    attrs = {a.name: helper.get_attribute_value(a) for a in mod.attribute}
    assert attrs == {"stride": [2, 1], "padding": [1, 2], "dilation": [1, 2], "groups": 2, "deform_groups": 4}
    plain = helper.make_node("DynconvDeformConv2d", ["x", "w", "off"], ["y"], domain="dynconv", stride=[1, 1],
                             padding=[1, 2], dilation=[1, 1], groups=1, offset_groups=1)
    mmcv = gpu_cases.compat_node(plain, "MMCVDeformConv2d")
    attrs = {a.name: helper.get_attribute_value(a) for a in mmcv.attribute}
    assert list(mmcv.input) == ["x", "off", "w"] and attrs["padding"] == [1, 1, 2, 2]
    assert attrs["bias"] == 0 and attrs["im2col_step"] == 32
    with pytest.raises(Exception, match="unknown compat form"):
        gpu_cases.compat_node(plain, "NoSuchForm")


@pytest.fixture(scope="module")
def stage1_drconv(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("gpu_cases_drconv")
    assert gpu_cases.main([str(out), "--cases", "04-", "13-"]) == 0  # DCNv3 (+ TRTDCNv3 form) and DRConv
    return out


def test_internimage_form_and_drconv_flip_references(stage1_drconv, tmp_path):
    from onnx import helper

    from dynconv.runtime import gpu_check

    manifest = json.loads((stage1_drconv / "manifest.json").read_text())
    kinds = [(c["kind"], c.get("form")) for c in manifest["cases"]]
    assert kinds == [("op", None), ("compat", "mmdeploy::TRTDCNv3"), ("op", None)]
    compat = manifest["cases"][1]
    for precision in ("fp32", "fp16"):
        proto = onnx.load(stage1_drconv / compat["files"][f"trt_{precision}"])
        onnx.checker.check_model(proto)
        (node,) = [n for n in proto.graph.node if n.domain == "mmdeploy"]
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        assert node.op_type == "TRTDCNv3" and len(attrs) == 12 and isinstance(attrs["offset_scale"], float)
        assert custom_nodes(proto) == [] and {o.domain for o in proto.opset_import} == {"", "mmdeploy"}
    assert compat["files"]["inputs"] == manifest["cases"][0]["files"]["inputs"]
    drconv = manifest["cases"][2]
    assert set(drconv["files"]["flips"]) == {"fp32", "fp16"}
    assert drconv["drconv"]["tie_fraction"]["fp16"] == [0.0, 0.0]  # generated guides keep a margin
    for flip_file, ref_file in zip(drconv["files"]["flips"]["fp16"], drconv["files"]["ref_outputs"]):
        with np.load(stage1_drconv / flip_file) as a, np.load(stage1_drconv / ref_file) as b:
            np.testing.assert_array_equal(a["output"], b["output"])  # no tie: nothing flips
    out = tmp_path / "out"
    assert gpu_check.main([str(stage1_drconv), "--out", str(out), "--fake", "--steps", "parity"]) == 0
    rows = json.loads((out / "summary.json").read_text())["parity"]
    assert {r["flipped_fraction"] for r in rows if r["case"] == drconv["id"] and r["against"] != "onnxruntime-vs-pytorch"} == {0.0}
