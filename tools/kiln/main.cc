#include <iostream>

#include "kiln/kiln.h"

int main(int argc, char** argv) {
  std::cout << "kiln " << kiln::version_string() << "\n";
  return 0;
}
