// Entry points looked up by IPluginRegistry::loadLibrary (TensorRT >= 8.6, trtexec --plugins).
#include "common/plugin_base.h"

extern "C" {

__attribute__((visibility("default"))) void setLoggerFinder(nvinfer1::ILoggerFinder* finder) {
    dynconv::set_logger_finder(finder);
}

__attribute__((visibility("default"))) nvinfer1::IPluginCreator* const* getPluginCreators(int32_t& nbCreators) {
    auto& list = dynconv::creator_list();
    nbCreators = static_cast<int32_t>(list.size());
    return list.data();
}

} // extern "C"
