#include "o1search/page_allocator.h"

#include <algorithm>
#include <string>

#include "o1search/error.h"

namespace o1search {

namespace {
constexpr int64_t kMaxPages = int64_t{1} << 30;
}

PageAllocator::PageAllocator(int64_t capacity) {
  O1_CHECK(capacity >= 1 && capacity <= kMaxPages, std::invalid_argument)
      << "num_pages must be in [1, " << kMaxPages << "], got " << capacity;
  tag_.assign(static_cast<size_t>(capacity), kFree);
  Reset();
}

uint8_t PageAllocator::tag(int32_t page) const {
  O1_CHECK(page >= 0 && page < capacity(), std::out_of_range)
      << "page " << page << " is outside [0, " << capacity() << ")";
  return tag_[static_cast<size_t>(page)];
}

void PageAllocator::Allocate(int64_t n, uint8_t tag, int32_t* out) {
  O1_CHECK(n >= 0, std::invalid_argument) << "cannot allocate " << n << " pages";
  O1_CHECK(n <= num_free(), OutOfPagesError)
      << "need " << n << " pages, " << num_free() << " free of " << capacity();
  O1_ICHECK(tag != kFree) << "allocating with the free tag";
  for (int64_t i = 0; i < n; ++i) {
    const int32_t p = free_.back();
    free_.pop_back();
    tag_[static_cast<size_t>(p)] = tag;
    out[i] = p;
  }
}

void PageAllocator::Free(int32_t page) {
  O1_CHECK(tag(page) != kFree, std::invalid_argument) << "page " << page << " is already free";
  tag_[static_cast<size_t>(page)] = kFree;
  free_.push_back(page);
}

void PageAllocator::SetTag(int32_t page, uint8_t tag) {
  O1_CHECK(this->tag(page) != kFree, std::invalid_argument) << "page " << page << " is free";
  O1_ICHECK(tag != kFree) << "use Free() to free a page";
  tag_[static_cast<size_t>(page)] = tag;
}

void PageAllocator::Reset() {
  const int32_t n = capacity();
  std::fill(tag_.begin(), tag_.end(), kFree);
  free_.resize(static_cast<size_t>(n));
  // Top of the stack is page 0, so a fresh pool hands out 0, 1, 2, ...
  for (int32_t i = 0; i < n; ++i) free_[static_cast<size_t>(i)] = n - 1 - i;
}

void PageAllocator::Check() const {
  std::vector<uint8_t> seen(tag_.size(), 0);
  for (int32_t p : free_) {
    O1_ICHECK(p >= 0 && p < capacity()) << "free list holds page " << p;
    O1_ICHECK(!seen[static_cast<size_t>(p)]) << "page " << p << " twice in the free list";
    O1_ICHECK(tag_[static_cast<size_t>(p)] == kFree) << "free-listed page " << p << " is in use";
    seen[static_cast<size_t>(p)] = 1;
  }
  int64_t tagged_free = 0;
  for (uint8_t t : tag_) tagged_free += (t == kFree);
  O1_ICHECK(tagged_free == num_free())
      << tagged_free << " pages tagged free, " << num_free() << " in the free list";
}

}  // namespace o1search
