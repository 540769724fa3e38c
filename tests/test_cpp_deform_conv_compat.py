"""mmdeploy compatibility creators MMCVModulatedDeformConv2d / MMCVDeformConv2d (version "1").

CPU side (libdynconv_cpuref.so test hooks): the compat fields map onto the same DynconvDeformConv2d params as
equivalent spec attributes, inputs given in mmcv's order (input, offset, mask, weight[, bias]) /
(input, offset, weight) give bit-identical outputs to the spec-ordered op and match the PyTorch reference,
and malformed fields are rejected with a reason. TensorRT side (trtpy): the creators are registered with
mmdeploy's names, versions and field names, build plugins from fields in mmdeploy's exact form, reject wrong
fields (None, no crash) and round-trip serialization byte-identically.
"""

from __future__ import annotations

import ctypes

import numpy as np
import pytest
import torch

import dynconv.plugins as P
import trt_fields
from dynconv.plugins import native

MOD, PLAIN = "MMCVModulatedDeformConv2d", "MMCVDeformConv2d"
PARAM_NAMES = ["kh", "kw", "sh", "sw", "ph", "pw", "dh", "dw", "groups", "offset_groups", "with_mask", "with_bias"]


# ---- ctypes helpers ---------------------------------------------------------------------------------------

def _lib():
    lib = native.cpuref_library()
    for fn in ("dynconv_cpuref_mmcv_check_fields", "dynconv_cpuref_mmcv_params", "dynconv_cpuref_mmcv_run",
               "dynconv_cpuref_deform_conv_params"):
        getattr(lib, fn).restype = ctypes.c_int
    return lib


def _check(rc: int, err) -> None:
    if rc < 0:
        raise P.DynconvError(err.value.decode())


def compat_check_fields(op: str, fields: dict) -> bytes:
    fa, err, blob = native.FieldArray(fields), ctypes.create_string_buffer(1024), ctypes.create_string_buffer(4096)
    n = _lib().dynconv_cpuref_mmcv_check_fields(op.encode(), fa.array, fa.count, blob, len(blob), err, len(err))
    _check(n, err)
    return blob.raw[:n]


def compat_params(op: str, fields: dict, n_inputs: int) -> dict:
    fa, err, out = native.FieldArray(fields), ctypes.create_string_buffer(1024), (ctypes.c_int * 12)()
    _check(_lib().dynconv_cpuref_mmcv_params(op.encode(), fa.array, fa.count, n_inputs, out, err, len(err)), err)
    return dict(zip(PARAM_NAMES, out))


def spec_params(attrs: dict) -> dict:
    fa, err, out = native.FieldArray(attrs), ctypes.create_string_buffer(1024), (ctypes.c_int * 12)()
    _check(_lib().dynconv_cpuref_deform_conv_params(fa.array, fa.count, out, err, len(err)), err)
    return dict(zip(PARAM_NAMES, out))


def compat_run(op: str, inputs: list[np.ndarray], fields: dict) -> np.ndarray:
    lib = _lib()
    fa = native.FieldArray(fields)
    arrays = [np.ascontiguousarray(a, dtype=np.float32) for a in inputs]
    n = len(arrays)
    ptrs = (ctypes.c_void_p * n)(*[a.ctypes.data for a in arrays])
    ranks = (ctypes.c_int * n)(*[a.ndim for a in arrays])
    dims = (ctypes.c_int64 * (8 * n))()
    for k, a in enumerate(arrays):
        for d, s in enumerate(a.shape):
            dims[8 * k + d] = s
    out_dims, out_rank, err = (ctypes.c_int64 * 8)(), ctypes.c_int(0), ctypes.create_string_buffer(1024)
    args = (op.encode(), fa.array, fa.count, n, ptrs, ranks, dims)
    _check(lib.dynconv_cpuref_mmcv_run(*args, None, out_dims, ctypes.byref(out_rank), err, len(err)), err)
    out = np.empty(tuple(out_dims[: out_rank.value]), np.float32)
    _check(lib.dynconv_cpuref_mmcv_run(*args, out.ctypes.data_as(ctypes.POINTER(ctypes.c_float)), out_dims,
                                       ctypes.byref(out_rank), err, len(err)), err)
    return out


# ---- attribute / input-order mapping through the CPU reference ----------------------------------------------

SPEC = dict(stride=[2, 1], padding=[1, 2], dilation=[1, 2], groups=2, offset_groups=3)


def test_modulated_fields_map_to_spec_params():
    mm = dict(stride=[2, 1], padding=[1, 2], dilation=[1, 2], groups=2, deform_groups=3)
    for n_inputs, bias in ((4, 0), (5, 1)):
        want = spec_params({**SPEC, "with_mask": 1, "with_bias": bias})
        assert compat_params(MOD, mm, n_inputs) == want
    assert compat_params(MOD, {}, 4) == spec_params(dict(with_mask=1))  # the same defaults


@pytest.mark.parametrize("padding", [[1, 2], [1, 1, 2, 2]])
def test_plain_fields_map_to_spec_params(padding):
    mm = dict(stride=[2, 1], padding=padding, dilation=[1, 2], groups=2, deform_groups=3, bias=0, im2col_step=7)
    assert compat_params(PLAIN, mm, 3) == spec_params(SPEC)
    assert compat_params(PLAIN, {}, 3) == spec_params({})


def _case(rng, n, cin, h, w, cout, kh, kw, attrs, with_mask, with_bias):
    spec = P.get_spec("deform_conv2d")
    x = rng.standard_normal((n, cin, h, w)).astype(np.float32)
    weight = rng.standard_normal((cout, cin // attrs["groups"], kh, kw)).astype(np.float32)
    _, _, ho, wo = spec.infer_shapes([x.shape, weight.shape, None, None, None], spec.normalize(attrs))[0]
    og = attrs["offset_groups"]
    offset = rng.uniform(-2.5, 2.5, (n, 2 * og * kh * kw, ho, wo)).astype(np.float32)
    mask = rng.uniform(0, 1, (n, og * kh * kw, ho, wo)).astype(np.float32) if with_mask else None
    bias = rng.standard_normal(cout).astype(np.float32) if with_bias else None
    return x, weight, offset, mask, bias


def _torch_ref(x, weight, offset, mask, bias, attrs):
    t = [None if a is None else torch.from_numpy(a.astype(np.float64)) for a in (x, weight, offset, mask, bias)]
    with torch.no_grad():
        return torch.ops.dynconv.deform_conv2d(*t, attrs["stride"], attrs["padding"], attrs["dilation"],
                                               attrs["groups"], attrs["offset_groups"]).numpy()


@pytest.mark.parametrize("with_bias", [0, 1])
def test_modulated_input_order_matches_spec_op(with_bias):
    rng = np.random.default_rng(11 + with_bias)
    x, weight, offset, mask, bias = _case(rng, 2, 24, 11, 9, 40, 3, 5, SPEC, 1, with_bias)
    mm = dict(stride=[2, 1], padding=[1, 2], dilation=[1, 2], groups=2, deform_groups=3)
    inputs = [x, offset, mask, weight] + ([bias] if with_bias else [])
    got = compat_run(MOD, inputs, mm)
    spec_out = native.run_reference("deform_conv2d", [x, weight, offset, mask, bias],
                                    {**SPEC, "with_mask": 1, "with_bias": with_bias})
    assert np.array_equal(got, spec_out)
    ref = _torch_ref(x, weight, offset, mask, bias, SPEC)
    assert np.abs(got - ref).max() <= 1e-4 * max(1.0, np.abs(ref).max())


@pytest.mark.parametrize("padding", [[1, 2], [1, 1, 2, 2]])
def test_plain_input_order_matches_spec_op(padding):
    rng = np.random.default_rng(5)
    x, weight, offset, _, _ = _case(rng, 2, 24, 11, 9, 40, 3, 5, SPEC, 0, 0)
    mm = dict(stride=[2, 1], padding=padding, dilation=[1, 2], groups=2, deform_groups=3, im2col_step=32)
    got = compat_run(PLAIN, [x, offset, weight], mm)
    assert np.array_equal(got, native.run_reference("deform_conv2d", [x, weight, offset, None, None], SPEC))
    ref = _torch_ref(x, weight, offset, None, None, SPEC)
    assert np.abs(got - ref).max() <= 1e-4 * max(1.0, np.abs(ref).max())


def test_compat_run_rejects_wrong_input_count_and_shapes():
    rng = np.random.default_rng(3)
    attrs = dict(stride=[1, 1], padding=[1, 1], dilation=[1, 1], groups=1, offset_groups=1)
    x, weight, offset, mask, _ = _case(rng, 1, 4, 6, 6, 4, 3, 3, attrs, 1, 0)
    with pytest.raises(P.DynconvError, match="expects 4 or 5 inputs"):
        compat_run(MOD, [x, offset, mask], {})
    with pytest.raises(P.DynconvError, match="expects 3 inputs"):
        compat_run(PLAIN, [x, offset, weight, mask], {})
    with pytest.raises(P.DynconvError, match="weight.shape|offset shape"):  # spec order given to the compat node
        compat_run(PLAIN, [x, weight, offset], {})


@pytest.mark.parametrize("op,fields,match", [
    (PLAIN, dict(padding=[1, 2, 1, 2]), r"\[ph, ph, pw, pw\]"),
    (PLAIN, dict(padding=[1, 1, 1]), "2 values"),
    (MOD, dict(padding=[1, 1, 2, 2]), "exactly 2 values"),
    (PLAIN, dict(bias=1), "no bias input"),
    (PLAIN, dict(bias=2), "above the maximum"),
    (PLAIN, dict(im2col_step=0), "below the minimum"),
    (MOD, dict(stride=[1, 1, 1]), "exactly 2 values"),
    (MOD, dict(dilation=[0, 1]), "below the minimum"),
    (MOD, dict(groups=0), "below the minimum"),
    (MOD, dict(deform_groups=1.0), "must be of type"),
    (MOD, dict(offset_groups=2), "unknown field"),
    (PLAIN, dict(deformable_group=2), "unknown field"),
])
def test_compat_fields_rejected(op, fields, match):
    with pytest.raises(P.DynconvError, match=match):
        compat_check_fields(op, fields)


def test_compat_fields_accepted():
    assert compat_check_fields(MOD, dict(stride=[1, 2], padding=[0, 1], dilation=[2, 1], groups=1, deform_groups=1))
    assert compat_check_fields(PLAIN, dict(stride=[1, 2], padding=[0, 0, 1, 1], dilation=[2, 1], groups=1,
                                           deform_groups=1, bias=0, im2col_step=64))


# ---- TensorRT creators (trtpy) --------------------------------------------------------------------------------

SCRIPT = r'''
report = {}
for op in cases:
    r = report[op["name"]] = {}
    c = reg.get_plugin_creator(op["name"], "1", "")
    r["found"] = c is not None
    if c is None: continue
    r["fields"] = [f.name for f in c.field_names]
    r["valid"] = []
    for fields in op["valid"]:
        p = c.create_plugin("ok", fc(fields))
        if p is None: r["valid"].append(None); continue
        b1 = bytes(p.serialize())
        q = c.deserialize_plugin("back", b1)
        r["valid"].append(dict(type=[p.plugin_type, p.plugin_version], nb_outputs=p.num_outputs,
                               roundtrip=q is not None and bytes(q.serialize()) == b1,
                               clone=p.clone() is not None))
    r["garbage_rejected"] = c.deserialize_plugin("junk", b"\x00" * 5) is None
    r["invalid"] = [c.create_plugin("bad", fc(f)) is None for f in op["invalid"]]
print("JSON" + json.dumps(report))
'''

CASES = [
    dict(name=MOD, fields=["stride", "padding", "dilation", "groups", "deform_groups"],
         valid=[[["stride", [1, 1]], ["padding", [1, 1]], ["dilation", [1, 1]], ["groups", 1], ["deform_groups", 1]],
                [["stride", [2, 1]], ["padding", [1, 2]], ["dilation", [1, 2]], ["groups", 2], ["deform_groups", 4]],
                []],
         invalid=[[["padding", [1, 1, 2, 2]]], [["stride", [0, 1]]], [["groups", 1.0]], [["deformable_group", 1]],
                  [["deform_groups", 0]]]),
    dict(name=PLAIN, fields=["stride", "padding", "dilation", "groups", "deform_groups", "bias", "im2col_step"],
         valid=[[["stride", [1, 1]], ["padding", [1, 1, 1, 1]], ["dilation", [1, 1]], ["groups", 1],
                 ["deform_groups", 1]],
                [["stride", [2, 1]], ["padding", [1, 2]], ["dilation", [1, 2]], ["groups", 2], ["deform_groups", 4],
                 ["bias", 0], ["im2col_step", 32]]],
         invalid=[[["padding", [1, 2, 1, 2]]], [["padding", [1, 1, 1]]], [["bias", 1]], [["im2col_step", 0]],
                  [["stride", [1]]], [["no_such_field", 1]]]),
]


@pytest.fixture(scope="module")
def plugin_lib():
    return trt_fields.plugin_library()


def test_compat_creators_under_tensorrt(plugin_lib):
    proc = trt_fields.run_script(SCRIPT, plugin_lib, CASES)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = trt_fields.report(proc)
    for case in CASES:
        r = report[case["name"]]
        assert r["found"], f"{case['name']} v1 not registered"
        assert r["fields"] == case["fields"]
        for fields, v in zip(case["valid"], r["valid"]):
            assert v is not None, f"{case['name']}: valid fields {fields} rejected: {proc.stdout[-2000:]}"
            assert v == dict(type=[case["name"], "1"], nb_outputs=1, roundtrip=True, clone=True), (fields, v)
        assert r["garbage_rejected"]
        bad = [f for f, ok in zip(case["invalid"], r["invalid"]) if not ok]
        assert not bad, f"{case['name']}: accepted invalid fields {bad}"
