#include "drconv/drconv_plugin.h"

#include "common/dims_expr.h"
#include "drconv/drconv_kernel.h"

#ifdef DYNCONV_SPEC_DRCONV
namespace dynconv {

DrconvPlugin::DrconvPlugin(const Attrs& attrs) : PluginBase(*find_op_table("drconv"), attrs), p_(drconv_params(attrs)) {}

nvinfer1::DimsExprs DrconvPlugin::getOutputDimensions(int32_t, const nvinfer1::DimsExprs* in, int32_t,
                                                      nvinfer1::IExprBuilder& b) noexcept {
    nvinfer1::DimsExprs out = in[0];
    out.d[1] = in[2].d[2];  // O from filters [N, m, O, C, kh, kw]
    out.d[2] = conv_out_expr(b, in[0].d[2], p_.kh, p_.sh, p_.ph, p_.ph, p_.dh);
    out.d[3] = conv_out_expr(b, in[0].d[3], p_.kw, p_.sw, p_.pw, p_.pw, p_.dw);
    return out;
}

size_t DrconvPlugin::getWorkspaceSize(const nvinfer1::PluginTensorDesc* inputs, int32_t nbInputs,
                                      const nvinfer1::PluginTensorDesc*, int32_t) const noexcept {
    try {
        DrconvParams p = p_;
        drconv_shapes(spec_shapes(inputs, nbInputs), &p);
        return drconv_workspace_size(p);
    } catch (const std::exception& e) {
        log_error(std::string(table_.name) + ": " + e.what());
        return 0;  // enqueue then fails with the same message instead of writing out of bounds
    }
}

int32_t DrconvPlugin::enqueue(const nvinfer1::PluginTensorDesc* inputDesc, const nvinfer1::PluginTensorDesc*,
                              const void* const* inputs, void* const* outputs, void* workspace, cudaStream_t stream) noexcept {
    try {
        DrconvParams p = p_;
        drconv_shapes(spec_shapes(inputDesc, 3), &p);
        return finish(drconv_forward(inputs[0], inputs[1], inputs[2], outputs[0], workspace, p, io_type(inputDesc[0]),
                                     stream));
    } catch (const std::exception& e) {
        log_error(std::string(table_.name) + ": " + e.what());
        return 1;
    }
}

DYNCONV_REGISTER_CREATOR(DrconvCreator);

} // namespace dynconv
#endif
