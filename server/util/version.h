// The version of this build, for `comity --version` and `comityd --version`:
// the CMake project version, and `git describe --always --dirty` of the
// source tree when CMake was configured (if it is a git checkout).
//
//   std::cout << "comityd " << comity::VersionString() << "\n";
//   // comityd 0.1.0 (git 8026f23-dirty)
#ifndef COMITY_SERVER_UTIL_VERSION_H_
#define COMITY_SERVER_UTIL_VERSION_H_

namespace comity {

// The CMake project version, e.g. "0.1.0".
const char* ProjectVersion();
// `git describe --always --dirty` at configure time; "" if unknown.
const char* GitDescribe();
// "0.1.0 (git 8026f23)", or "0.1.0" without git.
const char* VersionString();

}  // namespace comity

#endif  // COMITY_SERVER_UTIL_VERSION_H_
