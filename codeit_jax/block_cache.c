/* A cache of large memory blocks for XLA's CPU runtime, loaded with LD_PRELOAD.
 *
 * Why: XLA's CPU runtime allocates the temporaries of every program run as one large block
 * per device (gigabytes for a train step) and frees it when the run ends. glibc serves such
 * blocks with a fresh mmap and unmaps them on free, so every step the kernel maps and zeroes
 * the same gigabytes again, page by page (docs/benchmarks.md has the share of a step). Here a
 * freed large block stays mapped and is handed out again to the next request of about its
 * size, as accelerator runtimes' allocators do with device memory.
 *
 * What: malloc, calloc, realloc, the aligned allocators and free are replaced; requests of at
 * least MIN_BLOCK bytes (and alignments up to 2 MiB) get a block of their own, mapped with
 * mmap, aligned to 2 MiB and advised to use transparent huge pages. Everything smaller goes to
 * glibc's allocator unchanged (its __libc_* entry points), so the cache only ever sees a few
 * hundred blocks at most. A freed block is kept while the free blocks together stay within
 * the cap (CODEIT_BLOCK_CACHE_BYTES, default three quarters of the physical memory); the least
 * recently freed go first, and free blocks are also released before a new block is mapped, so
 * that kept blocks never push the process over its peak by more than the cap. A request reuses
 * a free block at most a quarter larger than itself. codeit_block_cache_release() unmaps every
 * free block: the CodeIt loop calls it between its stages, so that the blocks a train step
 * keeps do not sit idle while the sandbox's workers need the memory.
 *
 * Limits: glibc's own functions that grow or free a buffer the caller allocated (getline on a
 * user buffer, for instance) call glibc's internal allocator; they must not be handed a block
 * of MIN_BLOCK bytes or more from this cache. Linux with glibc only; codeit_jax/block_cache.py
 * builds and loads it.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

extern void *__libc_malloc(size_t size);
extern void __libc_free(void *ptr);
extern void *__libc_calloc(size_t count, size_t size);
extern void *__libc_realloc(void *ptr, size_t size);
extern void *__libc_memalign(size_t alignment, size_t size);

#define MIN_BLOCK ((size_t)64 << 20)
#define ALIGNMENT ((size_t)2 << 20) /* a transparent huge page */
#define SLOTS 1024

typedef struct {
  char *start;        /* NULL: an empty slot */
  size_t size;        /* bytes mapped, a multiple of ALIGNMENT */
  int in_use;
  unsigned long freed; /* when it was last freed, for the least recently freed first */
} Block;

static Block blocks[SLOTS];
static size_t free_bytes; /* the blocks kept mapped but not in use */
static size_t cap;
static unsigned long clock_ticks;
static unsigned long mappings; /* blocks mapped so far, for tests */
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

static void lock_cache(void) { pthread_mutex_lock(&lock); }
static void unlock_cache(void) { pthread_mutex_unlock(&lock); }

__attribute__((constructor)) static void start(void) {
  const char *value = getenv("CODEIT_BLOCK_CACHE_BYTES");
  if (value != NULL && *value != '\0') {
    cap = (size_t)strtoull(value, NULL, 10); /* block_cache.py has checked it */
  } else {
    long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
    cap = pages > 0 && page > 0 ? (size_t)pages / 4 * 3 * (size_t)page : (size_t)8 << 30;
  }
  /* A fork while another thread holds the lock would leave the child's copy locked. */
  pthread_atfork(lock_cache, unlock_cache, unlock_cache);
}

/* Unmap the least recently freed free blocks until free_bytes <= limit. Lock held. */
static void release_until(size_t limit) {
  while (free_bytes > limit) {
    int oldest = -1;
    for (int i = 0; i < SLOTS; i++) {
      if (blocks[i].start && !blocks[i].in_use &&
          (oldest < 0 || blocks[i].freed < blocks[oldest].freed)) {
        oldest = i;
      }
    }
    if (oldest < 0) return;
    munmap(blocks[oldest].start, blocks[oldest].size);
    free_bytes -= blocks[oldest].size;
    blocks[oldest].start = NULL;
  }
}

/* A block of at least size bytes, or NULL (then glibc serves the request); *fresh (where fresh
 * is not NULL) says whether it was just mapped (and so holds zeros). */
static void *take_block(size_t size, int *fresh) {
  if (fresh != NULL) *fresh = 0;
  if (size > SIZE_MAX - 2 * ALIGNMENT) return NULL;
  size_t wanted = (size + ALIGNMENT - 1) & ~(ALIGNMENT - 1);
  lock_cache();
  int best = -1, empty = -1;
  for (int i = 0; i < SLOTS; i++) {
    Block *b = &blocks[i];
    if (b->start == NULL) {
      if (empty < 0) empty = i;
    } else if (!b->in_use && b->size >= wanted && b->size - wanted <= wanted / 4 &&
               (best < 0 || b->size < blocks[best].size)) {
      best = i;
    }
  }
  if (best >= 0) {
    blocks[best].in_use = 1;
    free_bytes -= blocks[best].size;
    unlock_cache();
    return blocks[best].start;
  }
  if (empty < 0) {
    unlock_cache();
    return NULL;
  }
  release_until(cap > wanted ? cap - wanted : 0);
  size_t mapped = wanted + ALIGNMENT;
  char *raw = mmap(NULL, mapped, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (raw == MAP_FAILED && free_bytes > 0) { /* out of memory or address space: give back all */
    release_until(0);
    raw = mmap(NULL, mapped, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  }
  if (raw == MAP_FAILED) {
    unlock_cache();
    return NULL;
  }
  char *start = (char *)(((uintptr_t)raw + ALIGNMENT - 1) & ~(uintptr_t)(ALIGNMENT - 1));
  if (start > raw) munmap(raw, (size_t)(start - raw));
  if (raw + mapped > start + wanted) munmap(start + wanted, (size_t)(raw + mapped - (start + wanted)));
  madvise(start, wanted, MADV_HUGEPAGE);
  blocks[empty] = (Block){start, wanted, 1, 0};
  mappings++;
  if (fresh != NULL) *fresh = 1;
  unlock_cache();
  return start;
}

/* The slot of the block in use that starts at ptr, or -1. Lock held. */
static int find_block(const void *ptr) {
  for (int i = 0; i < SLOTS; i++) {
    if (blocks[i].start == ptr && blocks[i].in_use) return i;
  }
  return -1;
}

/* Cheap test first: every block starts at a multiple of ALIGNMENT, glibc's chunks rarely do. */
static int maybe_ours(const void *ptr) {
  return ptr != NULL && ((uintptr_t)ptr & (ALIGNMENT - 1)) == 0;
}

/* Keep the block if ptr is one; 0 if it is glibc's. */
static int give_back(void *ptr) {
  if (!maybe_ours(ptr)) return 0;
  lock_cache();
  int i = find_block(ptr);
  if (i >= 0) {
    blocks[i].in_use = 0;
    blocks[i].freed = ++clock_ticks;
    free_bytes += blocks[i].size;
    release_until(cap);
  }
  unlock_cache();
  return i >= 0;
}

/* The usable size of the block at ptr, 0 if ptr is glibc's. */
static size_t block_size(const void *ptr) {
  if (!maybe_ours(ptr)) return 0;
  lock_cache();
  int i = find_block(ptr);
  size_t size = i >= 0 ? blocks[i].size : 0;
  unlock_cache();
  return size;
}

void *malloc(size_t size) {
  void *ptr = size >= MIN_BLOCK ? take_block(size, NULL) : NULL;
  return ptr != NULL ? ptr : __libc_malloc(size);
}

void free(void *ptr) {
  if (!give_back(ptr)) __libc_free(ptr);
}

void *calloc(size_t count, size_t size) {
  size_t total;
  if (__builtin_mul_overflow(count, size, &total)) {
    errno = ENOMEM;
    return NULL;
  }
  int fresh;
  void *ptr = total >= MIN_BLOCK ? take_block(total, &fresh) : NULL;
  if (ptr == NULL) return __libc_calloc(count, size);
  /* A new mapping is zeros already (untouched until used); a kept block holds its last
   * user's data. */
  return fresh ? ptr : memset(ptr, 0, total);
}

void *realloc(void *ptr, size_t size) {
  size_t old = block_size(ptr);
  if (old == 0) {
    if (ptr == NULL) return malloc(size);
    return __libc_realloc(ptr, size); /* glibc's block stays glibc's */
  }
  if (size == 0) {
    free(ptr);
    return NULL;
  }
  if (size <= old && size >= MIN_BLOCK) return ptr;
  void *moved = malloc(size);
  if (moved == NULL) return NULL;
  memcpy(moved, ptr, old < size ? old : size);
  free(ptr);
  return moved;
}

void *reallocarray(void *ptr, size_t count, size_t size) {
  size_t total;
  if (__builtin_mul_overflow(count, size, &total)) {
    errno = ENOMEM;
    return NULL;
  }
  return realloc(ptr, total);
}

static void *aligned(size_t alignment, size_t size) {
  void *ptr = size >= MIN_BLOCK && alignment <= ALIGNMENT ? take_block(size, NULL) : NULL;
  return ptr != NULL ? ptr : __libc_memalign(alignment, size);
}

int posix_memalign(void **out, size_t alignment, size_t size) {
  if (alignment < sizeof(void *) || (alignment & (alignment - 1)) != 0) return EINVAL;
  void *ptr = aligned(alignment, size);
  if (ptr == NULL) return ENOMEM;
  *out = ptr;
  return 0;
}

void *aligned_alloc(size_t alignment, size_t size) { return aligned(alignment, size); }

void *memalign(size_t alignment, size_t size) { return aligned(alignment, size); }

void *valloc(size_t size) { return aligned((size_t)sysconf(_SC_PAGESIZE), size); }

void *pvalloc(size_t size) {
  size_t page = (size_t)sysconf(_SC_PAGESIZE);
  return aligned(page, (size + page - 1) & ~(page - 1));
}

void free_sized(void *ptr, size_t size) {
  (void)size;
  free(ptr);
}

void free_aligned_sized(void *ptr, size_t alignment, size_t size) {
  (void)alignment;
  (void)size;
  free(ptr);
}

size_t malloc_usable_size(void *ptr) {
  size_t size = block_size(ptr);
  if (size != 0 || ptr == NULL) return size;
  static size_t (*glibc_usable_size)(void *);
  if (glibc_usable_size == NULL) glibc_usable_size = dlsym(RTLD_NEXT, "malloc_usable_size");
  return glibc_usable_size != NULL ? glibc_usable_size(ptr) : 0;
}

/* Unmap every free block (the blocks in use stay). */
void codeit_block_cache_release(void) {
  lock_cache();
  release_until(0);
  unlock_cache();
}

/* For tests: blocks mapped so far, blocks in use, bytes kept free. */
void codeit_block_cache_stats(unsigned long out[3]) {
  lock_cache();
  unsigned long in_use = 0;
  for (int i = 0; i < SLOTS; i++) in_use += blocks[i].start != NULL && blocks[i].in_use;
  out[0] = mappings;
  out[1] = in_use;
  out[2] = free_bytes;
  unlock_cache();
}
