// The Catch2 main, compiled once: catch.hpp is a big header, and only this file pays
// for its implementation part.
#define CATCH_CONFIG_MAIN
#include <catch2/catch.hpp>
