#include "compat/mmcv_deform_conv_plugin.h"

#include <cstring>

#include "deform_conv/deform_conv_kernel.h"
#include "deform_conv/deform_conv_op.h"
#include "deform_conv/deform_conv_plugin.h"

namespace dynconv {

MmcvDeformConvPlugin::MmcvDeformConvPlugin(MmcvDcnKind kind, const Attrs& attrs, int n_inputs)
    : PluginBase(mmcv_deform_conv_table(kind), attrs), kind_(kind), p_(mmcv_deform_conv_params(attrs, kind)),
      n_inputs_(n_inputs) {}

nvinfer1::DimsExprs MmcvDeformConvPlugin::getOutputDimensions(int32_t, const nvinfer1::DimsExprs* in, int32_t nbInputs,
                                                              nvinfer1::IExprBuilder& b) noexcept {
    note_inputs(nbInputs);
    const int w = kind_ == MmcvDcnKind::kModulated ? 3 : 2;  // weight position in the node's inputs
    nvinfer1::DimsExprs out = in[0];
    if (nbInputs <= w || in[0].nbDims != 4 || in[w].nbDims != 4) return out;  // rejected later by the shape checks
    out.d[1] = in[w].d[0];
    out.d[2] = conv_out_expr_k(b, in[0].d[2], in[w].d[2], p_.sh, p_.ph, p_.ph, p_.dh);  // H first
    out.d[3] = conv_out_expr_k(b, in[0].d[3], in[w].d[3], p_.sw, p_.pw, p_.pw, p_.dw);
    return out;
}

bool MmcvDeformConvPlugin::supportsFormatCombination(int32_t pos, const nvinfer1::PluginTensorDesc* inOut,
                                                     int32_t nbInputs, int32_t nbOutputs) noexcept {
    note_inputs(nbInputs);
    return PluginBase::supportsFormatCombination(pos, inOut, nbInputs, nbOutputs);
}

void MmcvDeformConvPlugin::configurePlugin(const nvinfer1::DynamicPluginTensorDesc*, int32_t nbInputs,
                                           const nvinfer1::DynamicPluginTensorDesc*, int32_t) noexcept {
    note_inputs(nbInputs);
}

int32_t MmcvDeformConvPlugin::enqueue(const nvinfer1::PluginTensorDesc* inputDesc, const nvinfer1::PluginTensorDesc*,
                                      const void* const* inputs, void* const* outputs, void*, cudaStream_t stream) noexcept {
    try {
        const std::vector<int> idx = mmcv_deform_conv_spec_index(kind_, n_inputs_);
        std::vector<Shape> spec(5);
        const void* ptr[5] = {nullptr, nullptr, nullptr, nullptr, nullptr};
        for (size_t k = 0; k < idx.size(); ++k) {
            spec[idx[k]].assign(inputDesc[k].dims.d, inputDesc[k].dims.d + inputDesc[k].dims.nbDims);
            ptr[idx[k]] = inputs[k];
        }
        DeformConvParams p = p_;
        p.with_bias = idx.size() > 4 ? 1 : 0;
        deform_conv_shapes(spec, &p);
        return finish(deform_conv_forward(ptr[0], ptr[1], ptr[2], ptr[3], ptr[4], outputs[0], p, io_type(inputDesc[0]),
                                          stream));
    } catch (const std::exception& e) {
        log_error(std::string(table_.name) + ": " + e.what());
        return 1;
    }
}

size_t MmcvDeformConvPlugin::getSerializationSize() const noexcept { return serialized_size(attrs_) + sizeof(int32_t); }

void MmcvDeformConvPlugin::serialize(void* buffer) const noexcept {
    serialize_attrs(attrs_, buffer);
    std::memcpy(static_cast<char*>(buffer) + serialized_size(attrs_), &n_inputs_, sizeof(int32_t));
}

// ------------------------------------------------------------------------------------------------------

PluginBase* MmcvDeformConvCreatorBase::from_blob(const void* data, size_t length, std::string* error) const {
    const OpTable& t = *table();  // mmcv_deform_conv_table(kind_)
    if (data == nullptr || length < sizeof(int32_t) + 8) {
        *error = std::string(t.name) + ": cannot deserialize: buffer too short";
        return nullptr;
    }
    const size_t n = length - sizeof(int32_t);
    Attrs attrs;
    if (!deserialize_attrs(t, data, n, &attrs, error)) return nullptr;
    int32_t n_inputs;
    std::memcpy(&n_inputs, static_cast<const char*>(data) + n, sizeof(int32_t));
    if (n_inputs != -1) mmcv_deform_conv_spec_index(kind_, n_inputs);  // throws for an impossible count
    return new MmcvDeformConvPlugin(kind_, attrs, n_inputs);
}

DYNCONV_REGISTER_CREATOR(MmcvModulatedDeformConvCreator);
DYNCONV_REGISTER_CREATOR(MmcvDeformConvCreator);

} // namespace dynconv
