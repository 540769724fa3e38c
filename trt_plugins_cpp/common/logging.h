// Plugin-side logging through TensorRT's ILogger (found via setLoggerFinder or getLogger()), else stderr.
#pragma once

#include <string>

#include <NvInferRuntime.h>

#include "common/trt_version.h"

namespace dynconv {

#if DYNCONV_TRT_HAS_LOAD_LIBRARY
void set_logger_finder(nvinfer1::ILoggerFinder* finder);
#endif
void log_message(nvinfer1::ILogger::Severity severity, const std::string& message);
inline void log_error(const std::string& m) { log_message(nvinfer1::ILogger::Severity::kERROR, m); }
inline void log_warning(const std::string& m) { log_message(nvinfer1::ILogger::Severity::kWARNING, m); }

} // namespace dynconv
