// Removed once tree.cc / radix_cache.cc exist.
namespace o1search { int placeholder_symbol = 0; }
