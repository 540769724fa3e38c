#include "involution/involution_plugin.h"

#include "common/dims_expr.h"
#include "involution/involution_kernel.h"

#ifdef DYNCONV_SPEC_INVOLUTION
namespace dynconv {

InvolutionPlugin::InvolutionPlugin(const Attrs& attrs)
    : PluginBase(*find_op_table("involution"), attrs), p_(involution_params(attrs)) {}

int32_t InvolutionPlugin::initialize() noexcept {
    return resident_threads_ > 0 ? 0 : finish(resident_threads(&resident_threads_));
}

nvinfer1::DimsExprs InvolutionPlugin::getOutputDimensions(int32_t, const nvinfer1::DimsExprs* in, int32_t,
                                                          nvinfer1::IExprBuilder& b) noexcept {
    nvinfer1::DimsExprs out = in[0];
    out.d[2] = conv_out_expr(b, in[0].d[2], p_.kh, p_.sh, p_.ph, p_.ph, p_.dh);
    out.d[3] = conv_out_expr(b, in[0].d[3], p_.kw, p_.sw, p_.pw, p_.pw, p_.dw);
    return out;
}

int32_t InvolutionPlugin::enqueue(const nvinfer1::PluginTensorDesc* inputDesc, const nvinfer1::PluginTensorDesc*,
                                  const void* const* inputs, void* const* outputs, void*, cudaStream_t stream) noexcept {
    try {
        if (initialize() != 0) return 1;
        InvolutionParams p = p_;
        involution_shapes(spec_shapes(inputDesc, 2), &p);
        return finish(involution_forward(inputs[0], inputs[1], outputs[0], p, io_type(inputDesc[0]),
                                         resident_threads_, stream));
    } catch (const std::exception& e) {
        log_error(std::string(table_.name) + ": " + e.what());
        return 1;
    }
}

DYNCONV_REGISTER_CREATOR(InvolutionCreator);

} // namespace dynconv
#endif
