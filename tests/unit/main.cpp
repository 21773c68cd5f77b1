// The one main() of mqtt_unit_tests; every tests/unit/*_test.cpp adds its test cases.
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include <doctest/doctest.h>
