#include "dcnv3/dcnv3_plugin.h"

#include "common/dims_expr.h"
#include "dcnv3/dcnv3_kernel.h"

#ifdef DYNCONV_SPEC_DCNV3
namespace dynconv {

Dcnv3Plugin::Dcnv3Plugin(const Attrs& attrs) : PluginBase(*find_op_table("dcnv3"), attrs), p_(dcnv3_params(attrs)) {}

int32_t Dcnv3Plugin::initialize() noexcept {
    return resident_threads_ > 0 ? 0 : finish(resident_threads(&resident_threads_));
}

nvinfer1::DimsExprs Dcnv3Plugin::getOutputDimensions(int32_t, const nvinfer1::DimsExprs* in, int32_t,
                                                     nvinfer1::IExprBuilder& b) noexcept {
    nvinfer1::DimsExprs out = in[0];  // [N, Ho, Wo, G*Cg]
    out.d[1] = conv_out_expr(b, in[0].d[1], p_.kh, p_.sh, p_.ph, p_.ph, p_.dh);
    out.d[2] = conv_out_expr(b, in[0].d[2], p_.kw, p_.sw, p_.pw, p_.pw, p_.dw);
    return out;
}

int32_t Dcnv3Plugin::enqueue(const nvinfer1::PluginTensorDesc* inputDesc, const nvinfer1::PluginTensorDesc*,
                             const void* const* inputs, void* const* outputs, void*, cudaStream_t stream) noexcept {
    try {
        if (initialize() != 0) return 1;
        Dcnv3Params p = p_;
        dcnv3_shapes(spec_shapes(inputDesc, 3), &p);
        return finish(dcnv3_forward(inputs[0], inputs[1], inputs[2], outputs[0], p, io_type(inputDesc[0]),
                                    resident_threads_, stream));
    } catch (const std::exception& e) {
        log_error(std::string(table_.name) + ": " + e.what());
        return 1;
    }
}

DYNCONV_REGISTER_CREATOR(Dcnv3Creator);

} // namespace dynconv
#endif
