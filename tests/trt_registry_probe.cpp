// Loads a plugin library into TensorRT's global registry one way (for test_trt_plugin_registration.py) and prints
// which plugin creators (name/version) were added after each step, as one JSON object on stdout.
//   trt_registry_probe LIB dlopen       plain dlopen (LD_PRELOAD, trtexec --plugins, Triton's TensorRT backend)
//   trt_registry_probe LIB load         IPluginRegistry::loadLibrary, deregisterLibrary, loadLibrary again
//   trt_registry_probe LIB dlopen+load  dlopen first, then the "load" steps
// C++ rather than the Python bindings: it must be built against the headers of the libnvinfer it runs with (the
// CPU test bundle pairs 8.6.1 Python bindings with 8.6.0 libraries, whose IPluginRegistry vtables differ, so its
// load_library calls another function). Builds against TensorRT 8.6 to 11.x; a GPU host can run it with its own.
#include <dlfcn.h>

#include <cstdio>
#include <map>
#include <string>

#include <NvInferRuntime.h>

namespace {

using Counts = std::map<std::string, int>;  // "name/version" -> registrations

#if NV_TENSORRT_MAJOR >= 10
// TensorRT 10 lists IPluginCreatorInterface (11 drops getPluginCreatorList); name them through their interface kind.
std::string creator_id(const nvinfer1::IPluginCreatorInterface& c) {
    const std::string kind = c.getInterfaceInfo().kind;
    if (kind == "PLUGIN CREATOR_V1") {
        const auto& v1 = static_cast<const nvinfer1::IPluginCreator&>(c);
        return std::string(v1.getPluginName()) + "/" + v1.getPluginVersion();
    }
    if (kind == "PLUGIN CREATOR_V3ONE") {
        const auto& v3 = static_cast<const nvinfer1::IPluginCreatorV3One&>(c);
        return std::string(v3.getPluginName()) + "/" + v3.getPluginVersion();
    }
    return "(" + kind + ")";
}

Counts creators() {
    Counts counts;
    int32_t n = 0;
    nvinfer1::IPluginCreatorInterface* const* list = getPluginRegistry()->getAllCreators(&n);
    for (int32_t k = 0; k < n; ++k) ++counts[creator_id(*list[k])];
    return counts;
}
#else
Counts creators() {
    Counts counts;
    int32_t n = 0;
    nvinfer1::IPluginCreator* const* list = getPluginRegistry()->getPluginCreatorList(&n);
    for (int32_t k = 0; k < n; ++k) ++counts[std::string(list[k]->getPluginName()) + "/" + list[k]->getPluginVersion()];
    return counts;
}
#endif

//! JSON list of the creators in `now` that are not in `before`, each "name/version" (xN when registered N times).
std::string added(const Counts& before, const Counts& now) {
    std::string out = "[";
    for (const auto& [id, count] : now) {
        if (before.count(id)) continue;
        out += (out.size() > 1 ? ", \"" : "\"") + id + (count > 1 ? " x" + std::to_string(count) : "") + "\"";
    }
    return out + "]";
}

} // namespace

int main(int argc, char** argv) {
    if (argc != 3) {
        std::fprintf(stderr, "usage: %s LIB dlopen|load|dlopen+load\n", argv[0]);
        return 2;
    }
    const std::string lib = argv[1], route = argv[2];
    nvinfer1::IPluginRegistry* registry = getPluginRegistry();
    const Counts before = creators();
    std::string json = "{";
    if (route == "dlopen" || route == "dlopen+load") {
        if (dlopen(lib.c_str(), RTLD_NOW | RTLD_LOCAL) == nullptr) {
            std::fprintf(stderr, "dlopen failed: %s\n", dlerror());
            return 1;
        }
        json += "\"after_dlopen\": " + added(before, creators()) + ", ";
    }
    if (route == "load" || route == "dlopen+load") {
        void* handle = registry->loadLibrary(lib.c_str());
        json += std::string("\"handle\": ") + (handle ? "true" : "false") + ", ";
        json += "\"after_load\": " + added(before, creators()) + ", ";
        if (handle != nullptr) registry->deregisterLibrary(handle);
        json += "\"after_deregister\": " + added(before, creators()) + ", ";
        void* again = registry->loadLibrary(lib.c_str());
        json += std::string("\"reload_handle\": ") + (again ? "true" : "false") + ", ";
        json += "\"after_reload\": " + added(before, creators()) + ", ";
    }
    json += "\"route\": \"" + route + "\"}";
    std::printf("%s\n", json.c_str());
    return 0;
}
