#include "common/registration.h"

#include <mutex>
#include <string>

#include "common/logging.h"

namespace dynconv {
namespace {

struct Creators {
    std::mutex mutex;
    std::vector<nvinfer1::IPluginCreator*> all;
    std::vector<nvinfer1::IPluginCreator*> registered;  //!< by register_creator, not yet withdrawn
};

Creators& creators() {
    static Creators c;  // function-local: constructed before the first static initialiser uses it
    return c;
}

std::string creator_id(const nvinfer1::IPluginCreator& c) {
    return std::string(c.getPluginName()) + " v" + c.getPluginVersion();
}

// TensorRT 10 deprecates the IPluginCreator overloads (11 removes them) in favour of IPluginCreatorInterface.
bool registry_add(nvinfer1::IPluginRegistry& registry, nvinfer1::IPluginCreator& creator) {
#if DYNCONV_TRT_HAS_CREATOR_INTERFACE
    return registry.registerCreator(static_cast<nvinfer1::IPluginCreatorInterface&>(creator), "");
#else
    return registry.registerCreator(creator, "");
#endif
}

bool registry_remove(nvinfer1::IPluginRegistry& registry, const nvinfer1::IPluginCreator& creator) {
#if DYNCONV_TRT_HAS_CREATOR_INTERFACE
    return registry.deregisterCreator(static_cast<const nvinfer1::IPluginCreatorInterface&>(creator));
#else
    return registry.deregisterCreator(creator);
#endif
}

//! TensorRT 8.6.0 (EA) and 8.6.1+ order IPluginRegistry's virtual functions differently (deregisterCreator of one
//! is another function of the other); registerCreator, the first, is the same. True unless the running libnvinfer
//! is the other 8.6 layout than the headers built against.
bool registry_layout_matches() {
#if NV_TENSORRT_MAJOR == 8 && NV_TENSORRT_MINOR == 6
    const int32_t running = getInferLibVersion();  // major * 1000 + minor * 100 + patch
    return running / 100 != 86 || (running % 100 == 0) == (NV_TENSORRT_PATCH == 0);
#else
    return true;
#endif
}

} // namespace

const std::vector<nvinfer1::IPluginCreator*>& creator_list() { return creators().all; }

bool register_creator(nvinfer1::IPluginCreator* creator) {
    Creators& c = creators();
    std::lock_guard<std::mutex> lock(c.mutex);
    c.all.push_back(creator);
    nvinfer1::IPluginRegistry* registry = getPluginRegistry();
    if (registry != nullptr && registry_add(*registry, *creator)) {
        c.registered.push_back(creator);
    } else {
        log_warning("plugin creator " + creator_id(*creator) +
                    " not registered at load time (no plugin registry, or one of that name is already registered)");
    }
    return true;
}

void withdraw_static_registrations() {
    Creators& c = creators();
    std::lock_guard<std::mutex> lock(c.mutex);
    if (c.registered.empty()) return;
    if (!registry_layout_matches()) {
        log_error("built against TensorRT " + std::to_string(NV_TENSORRT_MAJOR) + "." +
                  std::to_string(NV_TENSORRT_MINOR) + "." + std::to_string(NV_TENSORRT_PATCH) + " headers but running " +
                  std::to_string(getInferLibVersion()) + ": cannot hand the creators to loadLibrary (rebuild "
                  "against the headers of the running TensorRT); they stay registered from load time");
        c.registered.clear();
        return;
    }
    nvinfer1::IPluginRegistry* registry = getPluginRegistry();
    for (nvinfer1::IPluginCreator* creator : c.registered)
        if (registry == nullptr || !registry_remove(*registry, *creator))
            log_warning("plugin creator " + creator_id(*creator) + ": cannot withdraw its load-time registration");
    c.registered.clear();
}

} // namespace dynconv
