// o1search — PageAllocator: a fixed pool of KV page ids with a free stack.
//
// Pages are ids 0 .. capacity-1.  Each page is free or used; a used page carries a small tag
// that its user defines (the RadixCache tags pages "held by the caller" or "cached in the
// tree").  The free list is a stack: Allocate pops from the top, Free pushes on top, and a
// fresh (or reset) pool hands out 0, 1, 2, ... in that order.  A page is never handed out
// twice; num_free() + num_used() == capacity() always.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace o1search {

class PageAllocator {
 public:
  /// Tag of a free page; used pages carry any other value given to Allocate / SetTag.
  static constexpr uint8_t kFree = 0;

  /// Builds a pool of `capacity` pages, all free.  Throws std::invalid_argument unless
  /// 1 <= capacity <= 2^30.
  explicit PageAllocator(int64_t capacity);

  PageAllocator(const PageAllocator&) = delete;
  PageAllocator& operator=(const PageAllocator&) = delete;
  PageAllocator(PageAllocator&&) = delete;
  PageAllocator& operator=(PageAllocator&&) = delete;

  int32_t capacity() const { return static_cast<int32_t>(tag_.size()); }
  int32_t num_free() const { return static_cast<int32_t>(free_.size()); }
  int32_t num_used() const { return capacity() - num_free(); }

  /// Tag of `page` (kFree when free).  Throws std::out_of_range for a page outside the pool.
  uint8_t tag(int32_t page) const;
  /// Same without the range check; `page` must be in range.
  uint8_t tag_unchecked(int32_t page) const { return tag_[static_cast<size_t>(page)]; }

  /// Pops `n` pages off the free stack into out[0..n), tagging them `tag` (!= kFree).
  /// Throws o1search::OutOfPagesError (and takes nothing) when fewer than n are free,
  /// std::invalid_argument when n < 0.
  void Allocate(int64_t n, uint8_t tag, int32_t* out);

  /// Pushes a used page back on the free stack.  Throws std::out_of_range for a page outside
  /// the pool, std::invalid_argument for a page that is already free.
  void Free(int32_t page);

  /// Retags a used page (e.g. held -> cached).  Throws like Free, and for tag == kFree.
  void SetTag(int32_t page, uint8_t tag);

  /// Every page free again, in the initial order.
  void Reset();

  /// Verifies free stack and tags agree (each free page once, tagged kFree, counts add up);
  /// throws o1search::InternalError otherwise.
  void Check() const;

 private:
  std::vector<int32_t> free_;  // stack; back() is handed out next
  std::vector<uint8_t> tag_;   // per page
};

}  // namespace o1search
