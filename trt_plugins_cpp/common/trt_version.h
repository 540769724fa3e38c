// Compile-time TensorRT version checks (NV_TENSORRT_MAJOR/MINOR of the headers built against).
#pragma once

#include <NvInferVersion.h>

//! True when the TensorRT headers are version major.minor or newer.
#define DYNCONV_TRT_AT_LEAST(major, minor) \
    (NV_TENSORRT_MAJOR > (major) || (NV_TENSORRT_MAJOR == (major) && NV_TENSORRT_MINOR >= (minor)))

//! IPluginRegistry::loadLibrary / deregisterLibrary, ILoggerFinder and the library entry points
//! (setLoggerFinder, getPluginCreators) exist from TensorRT 8.6 on.
#define DYNCONV_TRT_HAS_LOAD_LIBRARY DYNCONV_TRT_AT_LEAST(8, 6)
//! TensorRT 10 adds IPluginCreatorInterface (the base of IPluginCreator) and the getCreators entry point.
#define DYNCONV_TRT_HAS_CREATOR_INTERFACE DYNCONV_TRT_AT_LEAST(10, 0)
