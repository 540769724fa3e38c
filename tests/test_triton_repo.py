"""dynconv-triton-repo from a fake plan + metadata (the plan bytes are opaque to the writer)."""

from __future__ import annotations

import re

import pytest
from test_runtime_models import write_fake_plan

from dynconv.plugins.errors import DynconvError
from dynconv.runtime import triton_cli
from dynconv.runtime.triton import write_repo


def _blocks(config: str, section: str) -> list[dict]:
    body = re.search(section + r" \[\n(.*?)\n\]", config, re.S).group(1)
    out = []
    for m in re.finditer(r'name: "(\w+)"\s+data_type: (\w+)\s+dims: \[ ([^\]]*) \]', body):
        out.append({"name": m.group(1), "type": m.group(2), "dims": [int(d) for d in m.group(3).split(",")]})
    return out


def test_repo_with_batching(tmp_path, capsys):
    plan = write_fake_plan(tmp_path)
    repo = tmp_path / "repo"
    rc = triton_cli.main([str(plan), "-o", str(repo), "--name", "dcn", "--max-batch", "4", "--dynamic-batching"])
    assert rc == 0, capsys.readouterr().err
    model = repo / "dcn"
    assert (model / "1" / "model.plan").read_bytes() == plan.read_bytes()
    config = (model / "config.pbtxt").read_text()
    assert 'name: "dcn"' in config and 'platform: "tensorrt_plan"' in config
    assert "max_batch_size: 4" in config
    assert _blocks(config, "input") == [{"name": "x", "type": "TYPE_FP32", "dims": [3, -1, -1]}]
    assert _blocks(config, "output") == [{"name": "y", "type": "TYPE_FP32", "dims": [4, -1, -1]},
                                         {"name": "idx", "type": "TYPE_INT32", "dims": [4]}]
    assert "dynamic_batching {" in config and "max_queue_delay_microseconds" in config
    assert "kind: KIND_GPU" in config
    readme = (model / "README.md").read_text()
    assert "LD_PRELOAD=/opt/dynconv/libdynconv_plugins.so tritonserver" in readme
    assert "--backend-config=tensorrt,plugins=" in readme
    assert not [p for p in repo.iterdir() if p.name.startswith(".")]


def test_repo_default_batch_and_fp16(tmp_path):
    plan = write_fake_plan(tmp_path, batch_max=16, dtype="float16")
    config = (write_repo(plan, tmp_path / "r", "m") / "config.pbtxt").read_text()
    assert "max_batch_size: 16" in config and "TYPE_FP16" in config and "dynamic_batching" not in config


def test_repo_without_batch_dim_keeps_full_dims(tmp_path):
    plan = write_fake_plan(tmp_path, dynamic_batch=False, with_plugin=False)
    config = (write_repo(plan, tmp_path / "r", "m") / "config.pbtxt").read_text()
    assert "max_batch_size: 0" in config
    assert _blocks(config, "input")[0]["dims"] == [1, 3, -1, -1]
    with pytest.raises(DynconvError, match="dynamic batch"):
        write_repo(plan, tmp_path / "r2", "m", max_batch=4)


@pytest.mark.parametrize(
    "argv, fragment",
    [
        (["--max-batch", "32"], "exceeds the engine profile"),
        (["--max-batch", "0", "--dynamic-batching"], "needs --max-batch > 0"),
        (["--name", "a/b"], "bad model name"),
    ],
)
def test_repo_errors(tmp_path, capsys, argv, fragment):
    plan = write_fake_plan(tmp_path)
    args = [str(plan), "-o", str(tmp_path / "repo"), *argv]
    if "--name" not in argv:
        args += ["--name", "m"]
    assert triton_cli.main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("dynconv-triton-repo: error: ") and fragment in err[0], err
    assert not (tmp_path / "repo" / "m").exists()


def test_repo_missing_metadata_and_existing_target(tmp_path, capsys):
    plan = write_fake_plan(tmp_path)
    assert triton_cli.main([str(plan), "-o", str(tmp_path / "r"), "--name", "m"]) == 0
    assert triton_cli.main([str(plan), "-o", str(tmp_path / "r"), "--name", "m"]) == 2
    assert "already exists" in capsys.readouterr().err
    (tmp_path / "model.plan.json").unlink()
    assert triton_cli.main([str(plan), "-o", str(tmp_path / "r2"), "--name", "m"]) == 2
    assert "metadata" in capsys.readouterr().err
    assert not (tmp_path / "r2" / "m").exists()
