// comity: the operator's command line. All logic is in client/cli.cc.
#include <cstdlib>
#include <iostream>
#include <string>
#include <vector>

#include "client/cli.h"

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  return comity::RunCli(
      args,
      [](const std::string& name) {
        const char* v = std::getenv(name.c_str());
        return std::string(v == nullptr ? "" : v);
      },
      std::cout, std::cerr);
}
