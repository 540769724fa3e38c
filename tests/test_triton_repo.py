"""dynconv-triton-repo for a fake plan + metadata (the plan bytes are opaque to the writer) and for a
reference ONNX; every config.pbtxt is parsed with Triton's own ModelConfig protobuf."""

from __future__ import annotations

import numpy as np
import pytest
from test_runtime_models import conv_relu, write_fake_plan

from dynconv.plugins.errors import DynconvError
from dynconv.runtime import triton_cli
from dynconv.runtime._cli import EXIT_ERROR
from dynconv.runtime.triton import parse_config, write_repo

model_config_pb2 = pytest.importorskip("tritonclient.grpc.model_config_pb2")


def _config(model_dir):
    return parse_config((model_dir / "config.pbtxt").read_text())


def _io(tensors) -> list[tuple[str, str, list[int]]]:
    return [(t.name, model_config_pb2.DataType.Name(t.data_type), list(t.dims)) for t in tensors]


def test_repo_with_batching(tmp_path, capsys):
    plan = write_fake_plan(tmp_path)
    repo = tmp_path / "repo"
    rc = triton_cli.main([str(plan), "-o", str(repo), "--name", "dcn", "--max-batch", "4", "--dynamic-batching"])
    assert rc == 0, capsys.readouterr().err
    model = repo / "dcn"
    assert (model / "1" / "model.plan").read_bytes() == plan.read_bytes()
    assert (model / "1" / "model.plan.json").read_bytes() == (tmp_path / "model.plan.json").read_bytes()
    config = _config(model)
    assert (config.name, config.platform, config.max_batch_size) == ("dcn", "tensorrt_plan", 4)
    assert _io(config.input) == [("x", "TYPE_FP32", [3, -1, -1])]
    assert _io(config.output) == [("y", "TYPE_FP32", [4, -1, -1]), ("idx", "TYPE_INT32", [4])]
    assert list(config.dynamic_batching.preferred_batch_size) == [2, 4]
    assert config.dynamic_batching.max_queue_delay_microseconds > 0
    assert [(g.kind, g.count) for g in config.instance_group] == [(model_config_pb2.ModelInstanceGroup.KIND_GPU, 1)]
    readme = (model / "README.md").read_text()
    assert "LD_PRELOAD=/opt/dynconv/libdynconv_plugins.so tritonserver" in readme
    assert "--backend-config=tensorrt,plugins=" in readme
    assert not [p for p in repo.iterdir() if p.name.startswith(".")]


def test_repo_default_batch_and_fp16(tmp_path):
    plan = write_fake_plan(tmp_path, batch_max=16, dtype="float16")
    config = _config(write_repo(plan, tmp_path / "r", "m"))
    assert config.max_batch_size == 16 and not config.HasField("dynamic_batching")
    assert _io(config.input)[0][1] == "TYPE_FP16"


def test_repo_without_batch_dim_keeps_full_dims(tmp_path):
    plan = write_fake_plan(tmp_path, dynamic_batch=False, with_plugin=False)
    config = _config(write_repo(plan, tmp_path / "r", "m"))
    assert config.max_batch_size == 0
    assert _io(config.input)[0][2] == [1, 3, -1, -1]
    with pytest.raises(DynconvError, match="dynamic batch"):
        write_repo(plan, tmp_path / "r2", "m", max_batch=4)


def test_parse_config_rejects_what_triton_rejects():
    with pytest.raises(DynconvError, match="ModelConfig"):
        parse_config('name: "m"\nmax_batch_size: 4\ninput [ { name: "x" data_type: TYPE_FLOAT32 dims: [ 3 ] } ]\n')
    with pytest.raises(DynconvError, match="ModelConfig"):
        parse_config('name: "m"\nbatch_size: 4\n')


@pytest.mark.parametrize(
    "argv, fragment",
    [
        (["--max-batch", "32"], "exceeds the engine profile"),
        (["--max-batch", "0", "--dynamic-batching"], "needs --max-batch > 0"),
        (["--name", "a/b"], "bad model name"),
        (["--instance-kind", "cpu"], "GPU only"),
    ],
)
def test_repo_errors(tmp_path, capsys, argv, fragment):
    plan = write_fake_plan(tmp_path)
    args = [str(plan), "-o", str(tmp_path / "repo"), *argv]
    if "--name" not in argv:
        args += ["--name", "m"]
    assert triton_cli.main(args) == EXIT_ERROR
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("dynconv-triton-repo: error: ") and fragment in err[0], err
    assert not (tmp_path / "repo" / "m").exists()


def test_repo_missing_metadata_and_existing_target(tmp_path, capsys):
    plan = write_fake_plan(tmp_path)
    assert triton_cli.main([str(plan), "-o", str(tmp_path / "r"), "--name", "m"]) == 0
    assert triton_cli.main([str(plan), "-o", str(tmp_path / "r"), "--name", "m"]) == EXIT_ERROR
    assert "already exists" in capsys.readouterr().err
    (tmp_path / "model.plan.json").unlink()
    assert triton_cli.main([str(plan), "-o", str(tmp_path / "r2"), "--name", "m"]) == EXIT_ERROR
    assert "metadata" in capsys.readouterr().err
    assert not (tmp_path / "r2" / "m").exists()


def test_onnx_entry_for_onnxruntime_backend(tmp_path, capsys):
    onnx_path = conv_relu(tmp_path / "conv.onnx")
    repo = tmp_path / "repo"
    rc = triton_cli.main([str(onnx_path), "-o", str(repo), "--name", "conv", "--dynamic-batching",
                          "--instance-kind", "cpu"])
    assert rc == 0, capsys.readouterr().err
    config = _config(repo / "conv")
    assert (config.platform, config.max_batch_size) == ("onnxruntime_onnx", 8)
    assert _io(config.input) == [("x", "TYPE_FP32", [3, -1, -1])]
    assert _io(config.output) == [("y", "TYPE_FP32", [4, -1, -1])]
    assert config.instance_group[0].kind == model_config_pb2.ModelInstanceGroup.KIND_CPU
    assert (repo / "conv" / "1" / "model.onnx").read_bytes() == onnx_path.read_bytes()
    static = conv_relu(tmp_path / "static.onnx", dynamic=False)
    assert _config(write_repo(static, repo, "static")).max_batch_size == 0
    with pytest.raises(DynconvError, match="dynamic batch"):
        write_repo(static, repo, "static2", max_batch=2)


def test_onnx_with_custom_ops_is_refused(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("DCNv3", ["x"], ["y"], domain="dynconv")], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("dynconv", 1)])
    onnx.save(model, str(tmp_path / "trt.onnx"))
    with pytest.raises(DynconvError, match="--target onnx"):
        write_repo(tmp_path / "trt.onnx", tmp_path / "repo", "m")
    assert not (tmp_path / "repo" / "m").exists()


def test_dynconv_serve_serves_the_same_repository(tmp_path):
    """The repository written for Triton is also a dynconv-serve model directory: same client code."""
    pytest.importorskip("uvicorn")
    httpclient = pytest.importorskip("tritonclient.http")
    from dynconv.runtime.serve_models import open_model, scan_directory
    from dynconv.runtime.serve_runner import InferenceServer
    from dynconv.runtime.server import ModelSet

    onnx_path = conv_relu(tmp_path / "conv.onnx")
    repo = tmp_path / "repo"
    write_repo(onnx_path, repo, "mynet", dynamic_batching=True)
    sources = scan_directory(repo)
    assert [(s.name, s.version, s.path.name) for s in sources] == [("mynet", "1", "model.onnx")]
    x = np.random.default_rng(0).standard_normal((2, 3, 5, 5)).astype(np.float32)
    with InferenceServer(ModelSet([open_model(s) for s in sources]), http_port=0, grpc_port=None) as srv:
        client = httpclient.InferenceServerClient(f"127.0.0.1:{srv.http_port}")
        tensor = httpclient.InferInput("x", list(x.shape), "FP32")
        tensor.set_data_from_numpy(x)
        y = client.infer("mynet", [tensor], model_version="1").as_numpy("y")
        assert client.get_model_config("mynet")["max_batch_size"] == 8
    assert y.shape == (2, 4, 5, 5) and (y >= 0).all()
