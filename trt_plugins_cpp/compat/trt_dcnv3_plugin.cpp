#include "compat/trt_dcnv3_plugin.h"

#ifdef DYNCONV_SPEC_DCNV3
namespace dynconv {

PluginBase* TrtDcnv3Creator::from_blob(const void* data, size_t length, std::string* error) const {
    const OpTable* dcn = find_op_table("dcnv3");
    Attrs attrs;
    std::string e;
    if (dcn == nullptr || !deserialize_attrs(*dcn, data, length, &attrs, &e)) {
        *error = "TRTDCNv3: " + (dcn ? e : std::string("no DynconvDCNv3 spec table"));
        return nullptr;
    }
    return make(attrs);
}

DYNCONV_REGISTER_CREATOR(TrtDcnv3Creator);

} // namespace dynconv
#endif
