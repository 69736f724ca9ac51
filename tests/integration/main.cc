// gtest main for the integration suite: exits 77 (meson's "skipped") when not root, because the
// real daemon needs root for the frontend's privilege drop, cgroups and namespaces.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>

int main(int argc, char** argv) {
  if (geteuid() != 0) {
    std::fprintf(stderr, "integration tests need root (cgroups, namespaces, privilege drop)\n");
    return 77;
  }
  testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
