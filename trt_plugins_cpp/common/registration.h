// How the plugin creators reach TensorRT's registry. Both routes work with the same library:
//  - plain dlopen / LD_PRELOAD / ctypes (trtexec --plugins, Triton's TensorRT backend): every creator registers
//    itself with getPluginRegistry() while the library's static objects are constructed;
//  - IPluginRegistry::loadLibrary (TensorRT >= 8.6: trtexec --dynamicPlugins, plans that carry the library):
//    TensorRT dlopens the library (which runs the static registration above), calls the exported
//    getPluginCreators/getCreators and registers the returned creators itself, refusing a library any of whose
//    creators is already registered. The entry points therefore first withdraw the static registrations, handing
//    every creator over to TensorRT, which then owns its registration (deregisterLibrary removes it).
#pragma once

#include <vector>

#include <NvInferRuntime.h>

#include "common/trt_version.h"

namespace dynconv {

//! Every creator of the library, in registration order (the array the entry points return).
const std::vector<nvinfer1::IPluginCreator*>& creator_list();

//! Lists `creator` and registers it with getPluginRegistry() (logs a warning when the registry refuses it, e.g.
//! another library already registered that name). Runs from static initialisers; returns true.
bool register_creator(nvinfer1::IPluginCreator* creator);

//! Deregisters the creators that register_creator registered (once; later calls do nothing), so that the
//! caller of an entry point (loadLibrary) can register them itself.
void withdraw_static_registrations();

} // namespace dynconv

//! One creator instance per library: registered at load time and returned by the entry points.
#define DYNCONV_REGISTER_CREATOR(Creator) \
    static const bool dynconv_registered_##Creator = ::dynconv::register_creator(new Creator())
