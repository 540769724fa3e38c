// The ops the CPU reference library can run (each guarded by its generated DYNCONV_SPEC_* macro).
#pragma once

#include "dynconv_op_tables.h"
#include "dcnv3/dcnv3_op.h"
#include "ddf/ddf_op.h"
#include "deform_conv/deform_conv_op.h"
#include "drconv/drconv_op.h"
#include "involution/involution_op.h"

namespace dynconv {

using CpuRunFn = Shape (*)(const Attrs&, const std::vector<Shape>&, const std::vector<const float*>&, float*);

struct CpuOp {
    const char* torch_name;
    CpuRunFn run;
    CpuRunFn run_fp16;  // the kernel's FP16-I/O algorithm where it differs from the FP32 one (else null)
};

static const CpuOp kCpuOps[] = {
#ifdef DYNCONV_SPEC_INVOLUTION
    {"involution", involution_run_cpu, nullptr},
#endif
#ifdef DYNCONV_SPEC_DDF
    {"ddf", ddf_run_cpu, nullptr},
#endif
#ifdef DYNCONV_SPEC_DRCONV
    {"drconv", drconv_run_cpu, drconv_run_cpu_fp16},
#endif
#ifdef DYNCONV_SPEC_DCNV3
    {"dcnv3", dcnv3_run_cpu, nullptr},
#endif
#ifdef DYNCONV_SPEC_DEFORM_CONV2D
    {"deform_conv2d", deform_conv_run_cpu, deform_conv_run_cpu_fp16},
#endif
    {nullptr, nullptr, nullptr},
};

} // namespace dynconv
