// Entry points of IPluginRegistry::loadLibrary (TensorRT >= 8.6; trtexec --dynamicPlugins, plans that carry
// the plugin library). TensorRT registers the returned creators itself, so the load-time registrations are
// withdrawn first (see common/registration.h). Built against TensorRT 8.5 (no loadLibrary) none is exported.
#include "common/logging.h"
#include "common/registration.h"

#if DYNCONV_TRT_HAS_LOAD_LIBRARY
extern "C" {

__attribute__((visibility("default"))) void setLoggerFinder(nvinfer1::ILoggerFinder* finder) {
    dynconv::set_logger_finder(finder);
}

//! TensorRT 8.6 (and, deprecated, 10+ when getCreators is absent).
__attribute__((visibility("default"))) nvinfer1::IPluginCreator* const* getPluginCreators(int32_t& nbCreators) {
    dynconv::withdraw_static_registrations();
    const auto& list = dynconv::creator_list();
    nbCreators = static_cast<int32_t>(list.size());
    return list.data();
}

#if DYNCONV_TRT_HAS_CREATOR_INTERFACE
//! TensorRT 10+: preferred over getPluginCreators.
__attribute__((visibility("default"))) nvinfer1::IPluginCreatorInterface* const* getCreators(int32_t& nbCreators) {
    dynconv::withdraw_static_registrations();
    static const std::vector<nvinfer1::IPluginCreatorInterface*> list(dynconv::creator_list().begin(),
                                                                      dynconv::creator_list().end());
    nbCreators = static_cast<int32_t>(list.size());
    return list.data();
}
#endif

} // extern "C"
#endif
