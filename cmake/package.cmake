# cpack -G DEB (from the build directory): one .deb, "percore", with hello_cores, the static
# libraries, the headers and the CMake/pkg-config files, as cmake --install lays them out.
set(CPACK_PACKAGE_NAME percore)
set(CPACK_PACKAGE_VENDOR "the percore authors")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY
    "C++20 HTTP/1.1 server engine with one io_uring loop per CPU, and its hello_cores demo")
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_RESOURCE_FILE_LICENSE ${PROJECT_SOURCE_DIR}/LICENSE)
set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)  # percore_0.1.0_amd64.deb
set(PERCORE_DEB_MAINTAINER "the percore authors <percore@invalid>" CACHE STRING
    "Maintainer field of the .deb")
set(CPACK_DEBIAN_PACKAGE_MAINTAINER ${PERCORE_DEB_MAINTAINER})
set(CPACK_DEBIAN_PACKAGE_SECTION net)
# What hello_cores loads (ldd, dpkg -S on Debian 12); written out rather than computed by
# dpkg-shlibdeps so that packaging needs nothing beyond dpkg.
string(CONCAT CPACK_DEBIAN_PACKAGE_DEPENDS
    "libc6 (>= 2.36), libstdc++6 (>= 12), libgcc-s1, libabsl20220623, liburing2 (>= 2.3), "
    "zlib1g, libssl3 (>= 3.0), libnghttp2-14 (>= 1.52)")
# Building on the static libraries needs the headers of what they use.
set(CPACK_DEBIAN_PACKAGE_RECOMMENDS
    "libabsl-dev, liburing-dev, zlib1g-dev, libssl-dev, libnghttp2-dev, nlohmann-json3-dev, pkg-config")
include(CPack)
