"""InternImage's TensorRT plugin name "TRTDCNv3" v"1" (mmdeploy::TRTDCNv3 in its ONNX exports), served by
libdynconv_plugins.so with the DynconvDCNv3 kernel.

* under trtpy (TensorRT 8.6, no GPU needed): the creator is registered with the original field names,
  accepts fields in exactly the form InternImage's exporter writes them (12 fields, plus the optional
  remove_center), rejects wrong ones, and its plugins round-trip through serialization byte-identically
  and serialize to the same blob as DynconvDCNv3 created from the equivalent attributes;
* through the CPU reference: the field mapping yields DynconvDCNv3's attributes (same serialized blob)
  and the same computation (C++ CPU math, checked against the PyTorch op).
"""

from __future__ import annotations

import ctypes

import numpy as np
import pytest
import torch

import dynconv.plugins as P
import trt_fields
from dynconv.plugins import native

FIELD_NAMES = ["kernel_h", "kernel_w", "stride_h", "stride_w", "pad_h", "pad_w", "dilation_h", "dilation_w",
               "group", "group_channels", "offset_scale", "im2col_step", "remove_center"]


def internimage_fields(kh=3, kw=3, sh=1, sw=1, ph=1, pw=1, dh=1, dw=1, group=4, group_channels=16, offset_scale=1.0,
                       im2col_step=256, remove_center=None) -> dict:
    """Fields as DCNv3Function.symbolic writes them (ints, offset_scale float; remove_center only if given)."""
    f = dict(kernel_h=kh, kernel_w=kw, stride_h=sh, stride_w=sw, pad_h=ph, pad_w=pw, dilation_h=dh, dilation_w=dw,
             group=group, group_channels=group_channels, offset_scale=float(offset_scale), im2col_step=im2col_step)
    if remove_center is not None:
        f["remove_center"] = remove_center
    return f


def dcnv3_attrs(f: dict) -> dict:
    """The DynconvDCNv3 attributes the compat creator must produce for InternImage fields ``f``."""
    g = lambda k, d: f.get(k, d)  # noqa: E731
    return dict(kernel_size=[g("kernel_h", 3), g("kernel_w", 3)], stride=[g("stride_h", 1), g("stride_w", 1)],
                padding=[g("pad_h", 1), g("pad_w", 1)], dilation=[g("dilation_h", 1), g("dilation_w", 1)],
                group=f["group"], group_channels=f["group_channels"], offset_scale=float(g("offset_scale", 1.0)),
                remove_center=g("remove_center", 0))


# (fields, N, H, W): symmetric InternImage-style and asymmetric / strided / remove_center configurations
COMPUTE_CASES = [
    (internimage_fields(group=4, group_channels=16), 1, 7, 9),
    (internimage_fields(group=2, group_channels=6, offset_scale=2.0, remove_center=1), 2, 8, 6),
    (internimage_fields(kh=3, kw=5, sh=2, sw=1, ph=1, pw=2, dh=1, dw=2, group=3, group_channels=5, offset_scale=0.5,
                        im2col_step=64), 2, 9, 13),
    (internimage_fields(kh=5, kw=3, sh=1, sw=2, ph=2, pw=0, dh=2, dw=1, group=1, group_channels=12, remove_center=1),
     1, 12, 7),
    (dict(group=2, group_channels=4), 1, 5, 6),  # everything else from the original creator's defaults
]

# (fields, text expected in the error)
INVALID = [
    ({**internimage_fields(), "no_such_field": 1}, "unknown field"),
    ({k: v for k, v in internimage_fields().items() if k != "group"}, "'group' is required"),
    ({k: v for k, v in internimage_fields().items() if k != "group_channels"}, "'group_channels' is required"),
    ({**internimage_fields(), "kernel_h": 0}, "'kernel_h' value 0 is below the minimum"),
    ({**internimage_fields(), "stride_w": 0}, "'stride_w' value 0 is below the minimum"),
    ({**internimage_fields(), "pad_h": -1}, "'pad_h' value -1 is below the minimum"),
    ({**internimage_fields(), "dilation_w": 0}, "'dilation_w' value 0 is below the minimum"),
    ({**internimage_fields(), "remove_center": 2}, "'remove_center' value 2 is not one of"),
    ({**internimage_fields(), "offset_scale": 2}, "'offset_scale' must be of type float"),
    ({**internimage_fields(), "group": 1.0}, "'group' must be of type int"),
    ({**internimage_fields(), "kernel_w": [3, 3]}, "'kernel_w' must hold exactly 1 value"),
    ({**internimage_fields(kh=4, kw=4), "remove_center": 1}, "remove_center=1 needs an odd kernel_size"),
    ({**internimage_fields(kh=1, kw=1), "remove_center": 1}, "remove_center=1 needs an odd kernel_size"),
]


# ---- CPU reference ---------------------------------------------------------------------------------------

def _lib() -> ctypes.CDLL:
    lib = native.cpuref_library()
    lib.dynconv_cpuref_trt_dcnv3_map.restype = ctypes.c_int
    lib.dynconv_cpuref_trt_dcnv3_run.restype = ctypes.c_int
    return lib


def compat_map(fields: dict) -> bytes:
    """TRTDCNv3 fields -> serialized DynconvDCNv3 attributes (C++ mapping)."""
    fa = native.FieldArray(fields)
    err = ctypes.create_string_buffer(1024)
    blob = ctypes.create_string_buffer(65536)
    n = _lib().dynconv_cpuref_trt_dcnv3_map(fa.array, fa.count, blob, len(blob), err, len(err))
    if n < 0:
        raise P.DynconvError(err.value.decode())
    return blob.raw[:n]


def compat_run(fields: dict, inputs: list[np.ndarray]) -> np.ndarray:
    """Run TRTDCNv3 (fields in InternImage's form) on the CPU through the C++ DCNv3 math."""
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
    out_dims, out_rank = (ctypes.c_int64 * 8)(), ctypes.c_int(0)
    err = ctypes.create_string_buffer(1024)
    args = (fa.array, fa.count, n, ptrs, ranks, dims)
    if lib.dynconv_cpuref_trt_dcnv3_run(*args, None, out_dims, ctypes.byref(out_rank), err, len(err)) != 0:
        raise P.DynconvError(err.value.decode())
    out = np.empty(tuple(out_dims[: out_rank.value]), dtype=np.float32)
    ptr = out.ctypes.data_as(ctypes.POINTER(ctypes.c_float))
    if lib.dynconv_cpuref_trt_dcnv3_run(*args, ptr, out_dims, ctypes.byref(out_rank), err, len(err)) != 0:
        raise P.DynconvError(err.value.decode())
    return out


def _inputs(attrs: dict, n: int, h: int, w: int, rng) -> list[np.ndarray]:
    spec = P.get_spec("dcnv3")
    norm = spec.normalize(attrs)
    c = norm["group"] * norm["group_channels"]
    x = rng.standard_normal((n, h, w, c)).astype(np.float32)
    _, ho, wo, _ = spec.infer_shapes([x.shape, None, None], norm)[0]
    p = P.num_points(norm)
    offset = rng.uniform(-3.0, 3.0, (n, ho, wo, norm["group"] * p * 2)).astype(np.float32)
    mask = rng.standard_normal((n, ho, wo, norm["group"] * p)).astype(np.float32)
    return [x, offset, mask]


@pytest.mark.parametrize("fields,n,h,w", COMPUTE_CASES, ids=[f"case{k}" for k in range(len(COMPUTE_CASES))])
def test_compat_mapping_computes_dcnv3(fields, n, h, w):
    attrs = dcnv3_attrs(fields)
    assert compat_map(fields) == native.check_fields("DynconvDCNv3", attrs)  # same attributes, same blob
    arrays = _inputs(attrs, n, h, w, np.random.default_rng(n * 1000 + h * 10 + w))
    got = compat_run(fields, arrays)
    ours = native.run_reference("dcnv3", arrays, attrs)
    np.testing.assert_array_equal(got, ours)  # the very same computation
    norm = P.get_spec("dcnv3").normalize(attrs)
    with torch.no_grad():
        ref = torch.ops.dynconv.dcnv3(*[torch.from_numpy(a.astype(np.float64)) for a in arrays],
                                      *[norm[a.name] for a in P.get_spec("dcnv3").attributes]).numpy()
    assert got.shape == ref.shape
    scale = max(1.0, float(np.abs(ref).max()))
    assert float(np.abs(got - ref).max()) <= 1e-4 * scale


def test_compat_honours_remove_center():
    """The original plugin ignores remove_center; ours drops the centre tap (P = 8 for 3x3)."""
    fields = internimage_fields(group=2, group_channels=4, remove_center=1)
    arrays = _inputs(dcnv3_attrs(fields), 1, 5, 5, np.random.default_rng(3))
    assert arrays[2].shape[-1] == 2 * 8
    got = compat_run(fields, arrays)
    assert got.shape == (1, 5, 5, 8)
    with pytest.raises(P.DynconvError, match="offset shape"):  # 9-point offsets do not fit remove_center=1
        compat_run(fields, [arrays[0], np.zeros((1, 5, 5, 2 * 9 * 2), np.float32), np.zeros((1, 5, 5, 18), np.float32)])


@pytest.mark.parametrize("fields,match", INVALID, ids=[m.split("'")[1] if "'" in m else m[:20] for _, m in INVALID])
def test_compat_mapping_rejects_wrong_fields(fields, match):
    with pytest.raises(P.DynconvError, match=match):
        compat_map(fields)


def test_compat_ignores_im2col_step_and_plugin_meta_fields():
    base = compat_map(internimage_fields())
    assert compat_map(internimage_fields(im2col_step=1)) == base
    assert compat_map({**internimage_fields(), "plugin_version": "1", "plugin_namespace": ""}) == base


# ---- TensorRT creator (trtpy) ------------------------------------------------------------------------------

SCRIPT = r'''
c = reg.get_plugin_creator("TRTDCNv3", "1", "")
ours = reg.get_plugin_creator("DynconvDCNv3", "1", "")
r = {"found": c is not None, "ours": ours is not None}
if c is not None:
    r["name"] = [c.name, c.plugin_version]
    r["fields"] = [[f.name, str(f.type)] for f in c.field_names]
    r["valid"] = []
    for fields, attrs in cases["valid"]:
        p = c.create_plugin("ok", fc(fields))
        item = {"created": p is not None}
        if p is not None:
            b1 = bytes(p.serialize())
            q = c.deserialize_plugin("back", b1)
            item.update(type=[p.plugin_type, p.plugin_version], nb_outputs=p.num_outputs,
                        roundtrip=q is not None and bytes(q.serialize()) == b1 and q.plugin_type == "TRTDCNv3",
                        clone=p.clone() is not None and bytes(p.clone().serialize()) == b1, blob=b1.hex())
            o = ours.create_plugin("dcnv3", fc(attrs)) if ours is not None else None
            item["same_as_dcnv3"] = o is not None and bytes(o.serialize()) == b1
        r["valid"].append(item)
    r["invalid"] = [c.create_plugin("bad", fc(f)) is None for f in cases["invalid"]]
    r["garbage_rejected"] = [c.deserialize_plugin("junk", bytes(b)) is None for b in (b"\x00" * 5, b"\x00" * 64)]
if ours is not None:  # DynconvDCNv3's own creator rejects remove_center with an even kernel as well
    r["ours_even_rc_rejected"] = ours.create_plugin("bad", fc({"kernel_size": [4, 4], "group": 1, "group_channels": 4,
                                                                "remove_center": 1})) is None
print("JSON" + json.dumps(r))
'''


@pytest.fixture(scope="module")
def plugin_lib():
    return trt_fields.plugin_library()


def test_trt_dcnv3_creator(plugin_lib):
    valid = [internimage_fields()]                                                 # InternImage export, no remove_center
    valid += [c[0] for c in COMPUTE_CASES]
    valid += [internimage_fields(group=7, group_channels=16, offset_scale=2.0, remove_center=0)]
    cases = {"valid": [[f, dcnv3_attrs(f)] for f in valid], "invalid": [f for f, _ in INVALID]}
    proc = trt_fields.run_script(SCRIPT, plugin_lib, cases)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    r = trt_fields.report(proc)
    assert r["found"], "TRTDCNv3 v1 not registered"
    assert r["name"] == ["TRTDCNv3", "1"]
    assert [f[0] for f in r["fields"]] == FIELD_NAMES
    assert all(t.endswith("INT32") for name, t in r["fields"] if name != "offset_scale")
    assert dict(r["fields"])["offset_scale"].endswith("FLOAT32")
    for fields, item in zip(valid, r["valid"]):
        assert item["created"], f"valid fields rejected: {fields}\n{proc.stderr[-2000:]}"
        assert item["type"] == ["TRTDCNv3", "1"] and item["nb_outputs"] == 1
        assert item["roundtrip"] and item["clone"], fields
        assert item["same_as_dcnv3"], f"TRTDCNv3 and DynconvDCNv3 disagree for {fields}"
        assert bytes.fromhex(item["blob"]) == compat_map(fields)  # plugin library == CPU reference mapping
    bad = [f for f, ok in zip(cases["invalid"], r["invalid"]) if not ok]
    assert not bad, f"accepted invalid fields {bad}"
    assert all(r["garbage_rejected"])
    assert r["ours"] and r["ours_even_rc_rejected"]
