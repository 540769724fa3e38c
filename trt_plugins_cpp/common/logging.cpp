#include "common/logging.h"

#include <atomic>
#include <cstdio>

namespace dynconv {

#if DYNCONV_TRT_HAS_LOAD_LIBRARY
namespace {
std::atomic<nvinfer1::ILoggerFinder*> g_finder{nullptr};
}

void set_logger_finder(nvinfer1::ILoggerFinder* finder) { g_finder.store(finder); }
#endif

void log_message(nvinfer1::ILogger::Severity severity, const std::string& message) {
    const std::string text = "[dynconv] " + message;
    nvinfer1::ILogger* logger = nullptr;
#if DYNCONV_TRT_HAS_LOAD_LIBRARY
    if (nvinfer1::ILoggerFinder* f = g_finder.load()) logger = f->findLogger();
#endif
    if (logger == nullptr) logger = getLogger();  // libnvinfer's logger (may be null before any builder/runtime)
    if (logger != nullptr) {
        logger->log(severity, text.c_str());
    } else {
        std::fprintf(stderr, "%s\n", text.c_str());
    }
}

} // namespace dynconv
