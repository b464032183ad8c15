# Included by CMake after every project() of llama.cpp's build (CMAKE_PROJECT_INCLUDE, set by
# packaging/build-deb.sh for aarch64 builds).
#
# Why: llama-cpp-sys-2's build.rs defines GGML_CPU_ARM_ARCH=armv8-a for every non-native
# aarch64 Linux build, after it forwards GGML_* variables from the environment, so an
# environment GGML_CPU_ARM_ARCH cannot win. Plain armv8-a has no SDOT/UDOT and no FP16
# arithmetic: llama.cpp's quantised dot products then run several times slower on the
# Cortex-A76 (RK3588) and A78AE (Orin). This file sets the variable again, after the build
# script's definition has been read, from TUTORD_GGML_CPU_ARM_ARCH.
if(DEFINED ENV{TUTORD_GGML_CPU_ARM_ARCH} AND NOT "$ENV{TUTORD_GGML_CPU_ARM_ARCH}" STREQUAL "")
    set(GGML_CPU_ARM_ARCH "$ENV{TUTORD_GGML_CPU_ARM_ARCH}" CACHE STRING "ggml-cpu -march (tutord packaging)" FORCE)
    if(NOT TUTORD_GGML_ARCH_REPORTED)
        set(TUTORD_GGML_ARCH_REPORTED ON)
        message(STATUS "tutord packaging: GGML_CPU_ARM_ARCH=${GGML_CPU_ARM_ARCH}")
    endif()
endif()
