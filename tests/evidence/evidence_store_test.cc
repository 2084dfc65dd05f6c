#include "gtest/gtest.h"
TEST(EvidencePlaceholder, Empty) {}
