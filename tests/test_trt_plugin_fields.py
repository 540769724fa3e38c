"""Under TensorRT's own Python (trtpy): every spec'd creator in libdynconv_plugins.so has the spec's
name, version and field names; valid fields create plugins, invalid ones give None (no crash);
serialize -> deserialize -> serialize is byte-identical."""

from __future__ import annotations

import pytest

import dynconv.plugins as P
import trt_fields
from dynconv.plugins import native

SCRIPT = r'''
report = {}
for op in cases:
    r = report[op["name"]] = {}
    c = reg.get_plugin_creator(op["name"], op["version"], "")
    r["found"] = c is not None
    if c is None: continue
    r["fields"] = [f.name for f in c.field_names]
    p = c.create_plugin("ok", fc(op["valid"]))
    r["created"] = p is not None
    if p is not None:
        r["nb_outputs"] = p.num_outputs
        r["type"] = [p.plugin_type, p.plugin_version]
        b1 = bytes(p.serialize())
        q = c.deserialize_plugin("back", b1)
        r["roundtrip"] = q is not None and bytes(q.serialize()) == b1
        r["garbage_rejected"] = c.deserialize_plugin("junk", b"\x00" * 5) is None
    r["invalid"] = [c.create_plugin("bad", fc(f)) is None for f in op["invalid"]]
print("JSON" + json.dumps(report))
'''


def _value(a):
    if a.type == "ints":
        return list(a.default) if a.default is not None else [max(1, int(a.minimum or 1))] * (a.length or 1)
    if a.type == "int":
        return a.default if a.default is not None else max(1, int(a.minimum or 1))
    if a.type == "float":
        return a.default if a.default is not None else 1.0
    return a.default if a.default is not None else a.choices[0]


def _cases(names):
    cases = []
    for spec in P.all_specs():
        if spec.torch_name not in names:
            continue
        attrs = spec.onnx_attributes
        valid = [[a.name, a.type, _value(a)] for a in attrs]
        invalid = []
        for k, a in enumerate(attrs):
            def swap(v, t=None, k=k, a=a):
                return [x if j != k else [a.name, t or a.type, v] for j, x in enumerate(valid)]
            if a.type == "ints":
                invalid.append(swap(_value(a) + [1]))                   # wrong length
                invalid.append(swap(1.0, "float"))                      # wrong type
            if a.type in ("int", "ints") and a.minimum is not None:
                bad = int(a.minimum) - 1
                invalid.append(swap([bad] * (a.length or 1) if a.type == "ints" else bad))  # out of range
            if a.type == "str" and a.choices:
                invalid.append(swap("no-such-choice"))                  # unknown choice
            if a.required:
                invalid.append([x for j, x in enumerate(valid) if j != k])  # missing
        invalid.append(valid + [["no_such_field", "int", 1]])            # unknown field
        cases.append(dict(name=spec.name, version=spec.version, fields=[a.name for a in attrs],
                          n_outputs=len(spec.outputs), valid=valid, invalid=invalid))
    return cases


@pytest.fixture(scope="module")
def plugin_lib():
    return trt_fields.plugin_library()


def test_creators_match_specs(plugin_lib):
    implemented = {t["torch_name"] for t in native.op_tables() if t["cpu"]}
    cases = _cases(implemented)
    assert cases, "no implemented op has a spec"
    proc = trt_fields.run_script(SCRIPT, plugin_lib, cases)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = trt_fields.report(proc)
    for case in cases:
        r = report[case["name"]]
        assert r["found"], f"{case['name']} v{case['version']} not registered"
        assert r["fields"] == case["fields"]
        assert r["created"], f"{case['name']}: valid fields rejected: {proc.stdout[-2000:]}"
        assert r["type"] == [case["name"], case["version"]]
        assert r["nb_outputs"] == case["n_outputs"]
        assert r["roundtrip"], f"{case['name']}: serialize/deserialize not byte-identical"
        assert r["garbage_rejected"]
        assert all(r["invalid"]), f"{case['name']}: accepted invalid fields {[c for c, ok in zip(case['invalid'], r['invalid']) if not ok]}"
