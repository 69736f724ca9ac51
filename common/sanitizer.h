// JW_ASAN: 1 in an AddressSanitizer build, JW_TSAN in a ThreadSanitizer one (the frontend's
// jobworker-frontend-tsan), with GCC or clang; header-only, used by any process.
#pragma once

// GCC defines __SANITIZE_ADDRESS__; clang before 17 does not and answers only __has_feature,
// which GCC 12's preprocessor does not know (hence the nesting).
#if defined(__SANITIZE_ADDRESS__)
#define JW_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define JW_ASAN 1
#endif
#endif
#ifndef JW_ASAN
#define JW_ASAN 0
#endif

#if defined(__SANITIZE_THREAD__)
#define JW_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define JW_TSAN 1
#endif
#endif
#ifndef JW_TSAN
#define JW_TSAN 0
#endif
