#include "deform_conv/deform_conv_plugin.h"

#include "deform_conv/deform_conv_kernel.h"

namespace dynconv {

const nvinfer1::IDimensionExpr* conv_out_expr_k(nvinfer1::IExprBuilder& b, const nvinfer1::IDimensionExpr* size,
                                                const nvinfer1::IDimensionExpr* k, int s, int pb, int pe, int d) {
    using nvinfer1::DimensionOperation;
    // size + pb + pe - d*(k-1) - 1 = (size + (pb + pe + d - 1)) - d*k
    const nvinfer1::IDimensionExpr* dk = b.operation(DimensionOperation::kPROD, *b.constant(d), *k);
    const nvinfer1::IDimensionExpr* num = b.operation(
        DimensionOperation::kSUB, *b.operation(DimensionOperation::kSUM, *size, *b.constant(pb + pe + d - 1)), *dk);
    const nvinfer1::IDimensionExpr* q = b.operation(DimensionOperation::kFLOOR_DIV, *num, *b.constant(s));
    return b.operation(DimensionOperation::kSUM, *q, *b.constant(1));
}

} // namespace dynconv

#ifdef DYNCONV_SPEC_DEFORM_CONV2D
namespace dynconv {

DeformConvPlugin::DeformConvPlugin(const Attrs& attrs)
    : PluginBase(*find_op_table("deform_conv2d"), attrs), p_(deform_conv_params(attrs)) {}

nvinfer1::DimsExprs DeformConvPlugin::getOutputDimensions(int32_t, const nvinfer1::DimsExprs* in, int32_t,
                                                          nvinfer1::IExprBuilder& b) noexcept {
    // in[0] = input [N, Cin, H, W], in[1] = weight [Cout, Cin/groups, kh, kw] (spec order; both required).
    nvinfer1::DimsExprs out = in[0];
    out.d[1] = in[1].d[0];
    out.d[2] = conv_out_expr_k(b, in[0].d[2], in[1].d[2], p_.sh, p_.ph, p_.ph, p_.dh);  // H first
    out.d[3] = conv_out_expr_k(b, in[0].d[3], in[1].d[3], p_.sw, p_.pw, p_.pw, p_.dw);
    return out;
}

size_t DeformConvPlugin::getWorkspaceSize(const nvinfer1::PluginTensorDesc* inputs, int32_t nbInputs,
                                          const nvinfer1::PluginTensorDesc*, int32_t) const noexcept {
    try {
        DeformConvParams p = p_;
        deform_conv_shapes(spec_shapes(inputs, nbInputs), &p);
        return deform_conv_workspace_size(p, io_type(inputs[0]));
    } catch (const std::exception& e) {
        log_error(std::string(table_.name) + ": " + e.what());
        return 0;  // enqueue then fails with the same message
    }
}

int32_t DeformConvPlugin::enqueue(const nvinfer1::PluginTensorDesc* inputDesc, const nvinfer1::PluginTensorDesc*,
                                  const void* const* inputs, void* const* outputs, void* workspace,
                                  cudaStream_t stream) noexcept {
    try {
        const std::vector<int> idx = present_inputs();
        const void* ptr[5] = {nullptr, nullptr, nullptr, nullptr, nullptr};
        for (size_t k = 0; k < idx.size(); ++k) ptr[idx[k]] = inputs[k];
        DeformConvParams p = p_;
        deform_conv_shapes(spec_shapes(inputDesc, int32_t(idx.size())), &p);
        const IoType type = io_type(inputDesc[0]);
        // getWorkspaceSize sized the workspace for the profile's largest shapes: at least this call's size
        return finish(deform_conv_forward(ptr[0], ptr[1], ptr[2], ptr[3], ptr[4], outputs[0], p, type, stream, workspace));
    } catch (const std::exception& e) {
        log_error(std::string(table_.name) + ": " + e.what());
        return 1;
    }
}

DYNCONV_REGISTER_CREATOR(DeformConvCreator);

} // namespace dynconv
#endif
