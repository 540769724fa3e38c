#include "ddf/ddf_plugin.h"

#include "common/dims_expr.h"
#include "ddf/ddf_kernel.h"

#ifdef DYNCONV_SPEC_DDF
namespace dynconv {

DdfPlugin::DdfPlugin(const Attrs& attrs) : PluginBase(*find_op_table("ddf"), attrs), p_(ddf_params(attrs)) {}

int32_t DdfPlugin::initialize() noexcept {
    return resident_threads_ > 0 ? 0 : finish(resident_threads(&resident_threads_));
}

nvinfer1::DimsExprs DdfPlugin::getOutputDimensions(int32_t, const nvinfer1::DimsExprs* in, int32_t,
                                                   nvinfer1::IExprBuilder& b) noexcept {
    const int pad = p_.d * (p_.k - 1) / 2;
    nvinfer1::DimsExprs out = in[0];
    out.d[2] = conv_out_expr(b, in[0].d[2], p_.k, p_.s, pad, pad, p_.d);
    out.d[3] = conv_out_expr(b, in[0].d[3], p_.k, p_.s, pad, pad, p_.d);
    return out;
}

int32_t DdfPlugin::enqueue(const nvinfer1::PluginTensorDesc* inputDesc, const nvinfer1::PluginTensorDesc*,
                           const void* const* inputs, void* const* outputs, void*, cudaStream_t stream) noexcept {
    try {
        if (initialize() != 0) return 1;
        DdfParams p = p_;
        ddf_shapes(spec_shapes(inputDesc, 3), &p);
        return finish(ddf_forward(inputs[0], inputs[1], inputs[2], outputs[0], p, io_type(inputDesc[0]),
                                  resident_threads_, stream));
    } catch (const std::exception& e) {
        log_error(std::string(table_.name) + ": " + e.what());
        return 1;
    }
}

DYNCONV_REGISTER_CREATOR(DdfCreator);

} // namespace dynconv
#endif
