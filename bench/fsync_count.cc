// An LD_PRELOAD library that counts a process's fsync and fdatasync calls,
// for e2e_bench's "fsyncs per request" without stopping the process at
// each call (strace would, and -p cannot use --seccomp-bpf). The counts
// live in a file the process maps shared, named by
// COMITY_FSYNC_COUNT_FILE; the bench reads them with pread at the start
// and end of each phase. Without the variable, the calls pass through
// uncounted.
//
//   export COMITY_FSYNC_COUNT_FILE=/tmp/fr.fsyncs
//   LD_PRELOAD=build/bin/libcomity_fsync_count.so build/bin/comityd --config FR/node.conf
//   # /tmp/fr.fsyncs: two native-endian uint64 at offsets 0 (fsync) and 8 (fdatasync)
//
// Only calls through libc's fsync/fdatasync symbols are counted (SQLite's
// unix VFS makes them so); a raw syscall(SYS_fsync) would not be.
#include <dlfcn.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <cstdlib>

namespace {

struct Counters {
  std::atomic<uint64_t> fsync;
  std::atomic<uint64_t> fdatasync;
};
static_assert(sizeof(Counters) == 16, "the file layout is two uint64");

using SyncFn = int (*)(int);

Counters* g_counters = nullptr;

SyncFn Next(const char* name) {
  return reinterpret_cast<SyncFn>(::dlsym(RTLD_NEXT, name));
}

__attribute__((constructor)) void MapCounters() {
  const char* path = std::getenv("COMITY_FSYNC_COUNT_FILE");
  if (path == nullptr || *path == '\0') return;
  const int fd = ::open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) return;
  void* p = MAP_FAILED;
  if (::ftruncate(fd, 4096) == 0) {
    p = ::mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  }
  ::close(fd);
  if (p != MAP_FAILED) g_counters = static_cast<Counters*>(p);
}

}  // namespace

extern "C" int fsync(int fd) {
  static const SyncFn real = Next("fsync");
  if (g_counters != nullptr) g_counters->fsync.fetch_add(1, std::memory_order_relaxed);
  return real(fd);
}

extern "C" int fdatasync(int fd) {
  static const SyncFn real = Next("fdatasync");
  if (g_counters != nullptr)
    g_counters->fdatasync.fetch_add(1, std::memory_order_relaxed);
  return real(fd);
}
